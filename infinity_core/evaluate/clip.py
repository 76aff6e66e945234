"""CLIP scores from a local Hugging Face CLIP folder (transformers layout), read offline.

S_txt = cos(CLIP image embedding of the output, CLIP text embedding of a text);
S_img = cos(CLIP image embedding of the output, CLIP image embedding of the style image).
Raw cosines of the projected embeddings, not clamped or scaled (the paper's 0.330 / 0.603 are
raw cosines). Images go through the folder's own preprocessing (preprocessor_config.json), as
transformers' CLIPProcessor does it on its PIL path.
"""
from __future__ import annotations

import json
import os

import torch
from PIL import Image

from ..errors import InfinityError
from ..weights.checkpoint import read_state_dict
from ..weights.t5_files import _first_line, _from_pretrained_kwargs

OPENAI_CLIP = "openai/clip-vit-base-patch32"
_WEIGHTS = ("model.safetensors", "pytorch_model.bin")
_TOKENIZER_SETS = (("tokenizer.json",), ("vocab.json", "merges.txt"))


def cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row-wise cosine similarity of [N, C] embeddings (broadcasting a [1, C] side)."""
    return torch.nn.functional.cosine_similarity(a.double(), b.double(), dim=-1)


class ClipScorer:
    """A CLIP model with its tokenizer and image processor; embeddings are L2-normalised."""

    def __init__(self, model, tokenizer, processor):
        self.model, self.tokenizer, self.processor = model, tokenizer, processor

    @property
    def device(self) -> torch.device:
        return self.model.text_projection.weight.device

    def pixel_values(self, images: list[Image.Image]) -> torch.Tensor:
        """The folder's preprocessing of RGB images: [N, 3, h, w] float."""
        out = self.processor(images=[im.convert("RGB") for im in images], return_tensors="pt")
        return out["pixel_values"].float()

    @torch.no_grad()
    def image_embeddings(self, images: list[Image.Image]) -> torch.Tensor:
        pixels = self.pixel_values(images).to(self.device, self.model.dtype)
        pooled = self.model.vision_model(pixel_values=pixels).pooler_output
        return torch.nn.functional.normalize(self.model.visual_projection(pooled).float(), dim=-1).cpu()

    @torch.no_grad()
    def text_embeddings(self, texts: list[str]) -> torch.Tensor:
        tokens = self.tokenizer(list(texts), padding=True, truncation=True,
                                max_length=self.model.config.text_config.max_position_embeddings,
                                return_tensors="pt")
        pooled = self.model.text_model(input_ids=tokens["input_ids"].to(self.device),
                                       attention_mask=tokens["attention_mask"].to(self.device)).pooler_output
        return torch.nn.functional.normalize(self.model.text_projection(pooled).float(), dim=-1).cpu()


def load_clip(folder: str, device="cpu") -> ClipScorer:
    """CLIP (both towers) from a local folder such as openai/clip-vit-base-patch32's: config.json,
    model.safetensors or pytorch_model.bin, the tokenizer files and preprocessor_config.json.
    Nothing is downloaded; `.bin` files are read with weights_only, so a file holding code is refused."""
    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    folder = os.fspath(folder)
    _check_folder(folder)
    weights = _weight_file(folder)
    if not any(all(os.path.isfile(os.path.join(folder, n)) for n in names) for names in _TOKENIZER_SETS):
        raise InfinityError(f"{folder}: no tokenizer files. Copy {OPENAI_CLIP}'s tokenizer.json (or vocab.json "
                            "and merges.txt) and tokenizer_config.json into the folder.")
    if not os.path.isfile(os.path.join(folder, "preprocessor_config.json")):
        raise InfinityError(f"{folder}: no preprocessor_config.json. CLIP's image preprocessing (size, crop, "
                            f"mean, std) is read from it: copy {OPENAI_CLIP}'s preprocessor_config.json into the "
                            "folder.")
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except Exception as exc:  # tokenizers and transformers raise many kinds for a bad or partial file
        raise InfinityError(f"{folder}: could not read the tokenizer ({_first_line(exc)}). Copy {OPENAI_CLIP}'s "
                            "tokenizer files into the folder again.") from exc
    verbosity, bar = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()  # the "no torchvision, using the PIL processor" notice is not for users
    hf_logging.disable_progress_bar()  # nor a "Loading weights" bar inside the run's own
    try:
        processor, (model, info) = _processor(folder), _model(folder, weights)
    finally:
        hf_logging.set_verbosity(verbosity)
        if bar:
            hf_logging.enable_progress_bar()
    wrong = list(info.get("missing_keys", ())) + list(info.get("mismatched_keys", ()))
    if wrong:
        shown = ", ".join(str(k) for k in wrong[:5])
        raise InfinityError(f"{folder}: the weights do not fit the CLIP model its config.json describes "
                            f"(missing or wrong shape: {shown}). Download config and weights together.")
    if len(tokenizer) > model.config.text_config.vocab_size:
        raise InfinityError(f"{folder}: the tokenizer has {len(tokenizer)} tokens but the model only "
                            f"{model.config.text_config.vocab_size}: the tokenizer files belong to another model.")
    return ClipScorer(model.to(device).eval().requires_grad_(False), tokenizer, processor)


def _processor(folder: str):
    """The folder's CLIPProcessor image settings on transformers' PIL path: transformers 5 would
    take its torchvision path where torchvision is installed, whose resize gives other pixels, so
    scores would depend on what else is installed. Both paths crop at floor((size - crop) / 2)."""
    from transformers import AutoImageProcessor, __version__

    options = {"backend": "pil"} if int(__version__.split(".")[0]) >= 5 else {"use_fast": False}
    try:
        return AutoImageProcessor.from_pretrained(folder, local_files_only=True, **options)
    except Exception as exc:  # a bad file raises anything from OSError to TypeError
        raise InfinityError(f"{folder}: could not read preprocessor_config.json ({_first_line(exc)}). Copy "
                            f"{OPENAI_CLIP}'s preprocessor_config.json into the folder again.") from exc


def _model(folder: str, weights: str):
    from transformers import CLIPModel

    try:
        kwargs = _from_pretrained_kwargs(torch.float32, safetensors=weights.endswith(".safetensors"))
        return CLIPModel.from_pretrained(folder, output_loading_info=True, **kwargs)
    except Exception as exc:  # OSError, RuntimeError, ValueError, UnpicklingError, ...
        raise InfinityError(f"{folder}: could not load the CLIP weights ({_first_line(exc)}). A file may be "
                            f"truncated or from another model: download {OPENAI_CLIP} again.") from exc


def _check_folder(folder: str) -> None:
    if not os.path.exists(folder):
        raise InfinityError(f"{folder}: no such folder. Download a CLIP model in Hugging Face format (for the "
                            f"paper's protocol {OPENAI_CLIP}: config.json, model.safetensors, the tokenizer "
                            "files and preprocessor_config.json) into it and give its path with --clip.")
    if not os.path.isdir(folder):
        raise InfinityError(f"{folder}: this is a file. CLIP is read from a folder in Hugging Face format "
                            "(config.json, weights, tokenizer files, preprocessor_config.json); give the "
                            "folder's path.")
    path = os.path.join(folder, "config.json")
    if not os.path.isfile(path):
        raise InfinityError(f"{folder}: no config.json. The folder must hold a CLIP model in Hugging Face "
                            f"format, such as {OPENAI_CLIP}: download its config.json with the other files.")
    try:
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
    except (OSError, ValueError) as exc:
        raise InfinityError(f"{path}: not a readable JSON file ({exc}). Download it again.") from exc
    model_type = config.get("model_type") if isinstance(config, dict) else None
    if model_type != "clip":
        what = f"a {model_type} model" if model_type else "a model of unknown type (no model_type)"
        raise InfinityError(f"{folder}: config.json describes {what}, not a CLIP with both the image and "
                            f"the text tower (model_type 'clip'). Use a full CLIP folder such as {OPENAI_CLIP}.")


def _weight_file(folder: str) -> str:
    for name in _WEIGHTS:
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            if name.endswith(".bin"):
                read_state_dict(path)  # refuses a pickle that would run code, whatever transformers does
            return path
    raise InfinityError(f"{folder}: no model weights. Expected model.safetensors (or pytorch_model.bin): "
                        f"download {OPENAI_CLIP}'s weights into the folder.")
