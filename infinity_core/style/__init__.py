"""InfinityStyle: training-free style personalization on Infinity (content, style and generation
paths; Feature Initialization, Key Stage Attention Sharing, Adaptive Query Sharing)."""
from .engine import stylize
from .prompts import DEFAULT_TEMPLATE, StyleConditioning, encode_prompts, generation_prompt
from .references import BITS_CACHE, StyleReference
from .regions import RegionPlan, Regions
from .stages import Stages, describe_schedule, format_steps, parse_steps, read_stages

__all__ = ["stylize", "DEFAULT_TEMPLATE", "StyleConditioning", "encode_prompts", "generation_prompt",
           "BITS_CACHE", "StyleReference", "RegionPlan", "Regions", "Stages", "describe_schedule", "format_steps",
           "parse_steps", "read_stages"]
