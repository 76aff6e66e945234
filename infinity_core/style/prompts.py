"""The three prompts of a stylized run: content "<content>", style "<style>", and generation
"<content> in <style>" (the template is editable)."""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Optional

from ..errors import InfinityError
from ..network.text import TextBatch

DEFAULT_TEMPLATE = "{content} in {style}"


_FIELD = re.compile(r"\{(\w*)\}")
log = logging.getLogger(__name__)


def generation_prompt(content: str, style: str, template: str = DEFAULT_TEMPLATE) -> str:
    """The template with {content} and {style} filled in. Without {content} the generation
    would not know its subject (refused); an unknown {field} would reach T5 as written (refused);
    without {style} the style images still act, but the prompt does not name the style (warned)."""
    unknown = sorted({f"{{{name}}}" for name in _FIELD.findall(template)} - {"{content}", "{style}"})
    if unknown:
        raise InfinityError(f"The generation template {template!r} has {', '.join(unknown)}; it knows only "
                            f"{{content}} and {{style}}, such as {DEFAULT_TEMPLATE!r}.")
    if "{content}" not in template:
        raise InfinityError(f"The generation template {template!r} must contain {{content}} "
                            f"(and usually {{style}}), such as {DEFAULT_TEMPLATE!r}.")
    if "{style}" not in template:
        log.warning("The generation template %r has no {style}: the generated image's prompt will not name the "
                    "style.", template)
    return template.replace("{content}", content.strip()).replace("{style}", style.strip())


@dataclass
class StyleConditioning:
    """Packed T5 features of the content, style and generation prompts (one row each) and of the
    optional negative prompt, with the texts they came from."""
    content: TextBatch
    style: TextBatch
    generation: TextBatch
    negative: Optional[TextBatch]
    texts: dict


def prompt_texts(content: str, style: str, template: str = DEFAULT_TEMPLATE, negative: str = "") -> list[str]:
    """The content, style and generation prompts (and the negative one, if any) as T5 reads them,
    after checking them: callers check before loading any model."""
    for name, value in (("content", content), ("style", style)):
        if not value or not value.strip():
            raise InfinityError(f"The {name} prompt is empty: describe the {name} in a few words "
                                f"(for example {'a cat' if name == 'content' else 'watercolor painting'!r}).")
    prompts = [content.strip(), style.strip(), generation_prompt(content, style, template)]
    if negative and negative.strip():
        prompts.append(negative.strip())
    return prompts


def encode_prompts(text_encoder, content: str, style: str, template: str = DEFAULT_TEMPLATE,
                   negative: str = "") -> StyleConditioning:
    prompts = prompt_texts(content, style, template, negative)
    text = text_encoder.encode(prompts)
    return StyleConditioning(
        content=text.select([0]), style=text.select([1]), generation=text.select([2]),
        negative=text.select([3]) if len(prompts) == 4 else None,
        texts=dict(zip(("content", "style", "generation", "negative"), prompts)))
