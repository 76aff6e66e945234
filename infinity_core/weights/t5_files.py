"""Reading the T5 text encoder from a local Hugging Face folder of google/flan-t5-xl (or a GGUF
encoder file in it), with a clear message for each way the folder can be wrong."""
from __future__ import annotations

import importlib.util
import json
import os

import torch

from ..errors import InfinityError
from ..network.text import T5TextEncoder
from .checkpoint import is_gguf, read_state_dict
from .gguf_file import open_gguf
from .t5_gguf import load_t5_gguf, own_config_and_tokenizer

FLAN_T5 = "google/flan-t5-xl"
_SAFETENSORS = ("model.safetensors", "model.safetensors.index.json")
_PICKLES = ("pytorch_model.bin", "pytorch_model.bin.index.json")
_TOKENIZER_FILES = ("tokenizer.json", "spiece.model")


def load_text_encoder(folder: str, device="cpu", dtype: torch.dtype = torch.float32) -> T5TextEncoder:
    """The T5 encoder of a local Hugging Face folder of google/flan-t5-xl (config.json, weights as
    model*.safetensors or pytorch_model*.bin, tokenizer.json / spiece.model), or of a T5 encoder
    GGUF file (`folder` is then the file). Nothing is downloaded.

    Only the encoder is built; decoder weights in the folder are skipped. `.bin` files are read
    with `weights_only`, so a file holding code is refused."""
    from transformers import T5EncoderModel

    folder = os.fspath(folder)
    if os.path.isfile(folder) and is_gguf(folder):
        return _gguf_encoder(folder, device, dtype)
    config = _check_folder(folder)
    weights = _weight_files(folder)
    tokenizer = _folder_tokenizer(folder, config)
    kwargs = _from_pretrained_kwargs(dtype, safetensors=weights[0].endswith(".safetensors"))
    try:
        model, info = T5EncoderModel.from_pretrained(folder, output_loading_info=True, **kwargs)
    except Exception as exc:  # as above: OSError, RuntimeError, ValueError, UnpicklingError, ...
        raise InfinityError(f"{folder}: could not load the T5 weights ({_first_line(exc)}). A file may be "
                            f"truncated or from another model: download {FLAN_T5} again.") from exc
    missing = list(info.get("missing_keys", ()))
    mismatched = list(info.get("mismatched_keys", ()))
    if missing or mismatched:
        shown = ", ".join(str(k) for k in (missing + mismatched)[:5])
        raise InfinityError(f"{folder}: the weights do not fit the T5 encoder its config.json describes "
                            f"(missing or wrong shape: {shown}). Download {FLAN_T5} again, config and "
                            "weights together.")
    model = model.to(device).eval().requires_grad_(False)
    return T5TextEncoder(model, tokenizer)


def check_text_width(encoder: T5TextEncoder, channels: int, folder: str) -> None:
    """Refuse a T5 whose features are not as wide as the transformer's text input (flan-t5-base is
    a valid T5 too, 768 wide): caught at load, not as a tensor-size error inside the sampler."""
    if encoder.channels != channels:
        raise InfinityError(f"{folder}: this T5 gives {encoder.channels}-wide features, but the transformer reads "
                            f"{channels}-wide ones ({FLAN_T5} gives 2048 for Infinity-2B). Use the text encoder "
                            "the transformer was trained with.")


def _gguf_encoder(path: str, device, dtype: torch.dtype) -> T5TextEncoder:
    """A T5 GGUF file: its own config and tokenizer when it carries them (llama.cpp's converter
    writes both), else those of the flan-t5-xl folder it is in."""
    from transformers import T5Config

    reader = open_gguf(path)  # its metadata once: a tokenizer inside takes seconds to read
    own = own_config_and_tokenizer(reader)
    if own is not None:
        config, tokenizer = own
        _check_tokenizer(path, tokenizer, config.vocab_size)
    else:
        folder = os.path.dirname(path)
        if not os.path.isfile(os.path.join(folder, "config.json")):
            raise InfinityError(f"{path}: this GGUF file carries no T5 tokenizer and model sizes of its own (files "
                                "made by llama.cpp's converter, such as flan-t5-xl-encoder-Q8_0.gguf, carry both). "
                                f"If it holds {FLAN_T5}'s weights, put it into a folder beside that model's "
                                "config.json and tokenizer files.")
        tokenizer = _folder_tokenizer(folder, _check_folder(folder))
        config = T5Config.from_pretrained(folder, local_files_only=True)
    model = load_t5_gguf(config, path, dtype, reader)
    return T5TextEncoder(model.to(device).eval().requires_grad_(False), tokenizer)


def _folder_tokenizer(folder: str, config: dict):
    from transformers import AutoTokenizer

    if not any(os.path.isfile(os.path.join(folder, n)) for n in _TOKENIZER_FILES):
        raise InfinityError(f"{folder}: no tokenizer files. Download {FLAN_T5}'s tokenizer files "
                            "(tokenizer.json, tokenizer_config.json, spiece.model) into the folder.")
    if not os.path.isfile(os.path.join(folder, "tokenizer.json")) and not _installed("google.protobuf"):
        # transformers would fall back to a tiktoken reader and report tiktoken missing instead
        raise InfinityError(f"{folder}: the folder has spiece.model but no tokenizer.json, and reading spiece.model "
                            "alone needs the protobuf package, which is not installed. Copy "
                            f"{FLAN_T5}'s tokenizer.json into the folder, or run: pip install protobuf")
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, legacy=True, local_files_only=True)
    except Exception as exc:  # tokenizers and transformers raise many kinds for a bad or partial file
        raise InfinityError(f"{folder}: could not read the tokenizer ({_first_line(exc)}). Copy "
                            f"{FLAN_T5}'s tokenizer.json, tokenizer_config.json and spiece.model into the "
                            "folder.") from exc
    _check_tokenizer(folder, tokenizer, config.get("vocab_size"))
    return tokenizer


def _check_folder(folder: str) -> dict:
    """The folder's config.json, once it is known to exist and describe a T5."""
    if not os.path.exists(folder):
        raise InfinityError(f"{folder}: no such folder. Download {FLAN_T5} (config.json, the model weights "
                            "and the tokenizer files) into it, e.g. models/text_encoders/flan-t5-xl/.")
    if not os.path.isdir(folder):
        raise InfinityError(f"{folder}: this is a file. The T5 text encoder is read from a folder holding "
                            f"{FLAN_T5} in Hugging Face format (config.json, model weights, tokenizer files); "
                            "give the folder's path.")
    path = os.path.join(folder, "config.json")
    if not os.path.isfile(path):
        raise InfinityError(f"{folder}: no config.json. The folder must hold {FLAN_T5} in Hugging Face "
                            "format: download its config.json into it, with the weights and tokenizer files.")
    try:
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
    except (OSError, ValueError) as exc:
        raise InfinityError(f"{path}: not a readable JSON file ({exc}). Download {FLAN_T5}'s "
                            "config.json again.") from exc
    model_type = config.get("model_type") if isinstance(config, dict) else None
    if model_type != "t5":
        what = f"a {model_type} model" if model_type else "a model of unknown type (no model_type)"
        raise InfinityError(f"{folder}: config.json describes {what}, not a T5 (model_type 't5'). "
                            f"Infinity uses {FLAN_T5}: put that model's files in the folder.")
    return config


def _weight_files(folder: str) -> list[str]:
    """Paths of the weight files transformers will read (safetensors preferred), after checking
    that every shard an index names is present and that pickles hold nothing but tensors."""
    for names in (_SAFETENSORS, _PICKLES):
        single, index = (os.path.join(folder, n) for n in names)
        if os.path.isfile(single):
            files = [single]
        elif os.path.isfile(index):
            files = _shards(index)
        else:
            continue
        if names is _PICKLES:
            for path in files:  # refuse code hidden in a pickle, whatever transformers does
                read_state_dict(path)  # memory-mapped (zip format) and dropped at once
        return files
    raise InfinityError(f"{folder}: no model weights. Expected model.safetensors (or sharded "
                        "model-0000x-of-0000y.safetensors with model.safetensors.index.json), or "
                        f"pytorch_model.bin: download {FLAN_T5}'s weights into the folder.")


def _shards(index: str) -> list[str]:
    folder = os.path.dirname(index)
    try:
        with open(index, encoding="utf-8") as f:
            names = sorted(set(json.load(f)["weight_map"].values()))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise InfinityError(f"{index}: not a readable weight index ({exc}). Download it again.") from exc
    missing = [n for n in names if not os.path.isfile(os.path.join(folder, n))]
    if missing:
        raise InfinityError(f"{folder}: weight shards missing: {', '.join(missing)}. Download them "
                            f"from {FLAN_T5} into the folder.")
    return [os.path.join(folder, n) for n in names]


def _check_tokenizer(folder: str, tokenizer, vocab) -> None:
    ids = tokenizer("a").input_ids
    eos = tokenizer.eos_token_id
    if eos is None or not ids or ids[-1] != eos or tokenizer.pad_token_id is None:
        raise InfinityError(f"{folder}: the tokenizer does not end prompts with </s> or has no <pad>: it is "
                            f"not {FLAN_T5}'s. Copy that model's tokenizer files into the folder.")
    if isinstance(vocab, int) and len(tokenizer) > vocab:
        raise InfinityError(f"{folder}: the tokenizer has {len(tokenizer)} tokens but the model only {vocab}: "
                            f"the tokenizer files belong to another model. Copy {FLAN_T5}'s tokenizer files "
                            "into the folder.")


def _from_pretrained_kwargs(dtype: torch.dtype, safetensors: bool) -> dict:
    """from_pretrained arguments for a local, offline, single-copy load on this transformers."""
    import inspect

    import transformers
    from transformers import T5EncoderModel

    version = tuple(int(p) if p.isdigit() else 0 for p in transformers.__version__.split(".")[:2])
    kwargs = {"local_files_only": True, "use_safetensors": True if safetensors else None}
    kwargs["dtype" if version >= (5, 0) else "torch_dtype"] = dtype  # 4.x knows torch_dtype; 5 warns on it
    if "weights_only" in inspect.signature(T5EncoderModel.from_pretrained).parameters:
        kwargs["weights_only"] = True
    if version < (5, 0) and importlib.util.find_spec("accelerate") is not None:
        kwargs["low_cpu_mem_usage"] = True  # build on `meta`, then load: one copy of the weights (v5 always does)
    return kwargs


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # its parent package is missing
        return False


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
