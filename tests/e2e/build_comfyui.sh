#!/usr/bin/env bash
# Build the real ComfyUI the browser tests run against, outside the repository:
#
#   bash tests/e2e/build_comfyui.sh [FOLDER]
#
# FOLDER (or INFINITYSTYLE_COMFY_ENV) defaults to /work/comfy-test by hand and to a cache folder in
# CI. It gets ComfyUI 0.8.0 and ComfyUI-GGUF unpacked from the tarballs (INFINITYSTYLE_COMFY_TARBALLS,
# else ../shared/comfyui beside the repository, else /work/shared/comfyui), a venv with torch 2.13.0
# (CPU), ComfyUI's requirements (its pinned front end 1.35.9), torchvision, pytest and playwright,
# and the newest front end tested (1.58.1) in a folder of its own. Debian's chromium is installed
# if missing (never a downloaded browser). Each step leaves a stamp naming what it was built from,
# so a second run redoes nothing. The last line printed is the folder.
set -euo pipefail

REPO="$(cd "$(dirname "$0")/../.." && pwd)"
COMFYUI_TARBALL=ComfyUI-0.8.0.tar.gz
GGUF_TARBALL=ComfyUI-GGUF.tar.gz
TORCH=2.13.0
TORCHVISION=0.28.0   # the release built against torch 2.13.0
NEWEST_FRONT_END=1.58.1

if [[ "${CI:-}" == true ]]; then default_env="${XDG_CACHE_HOME:-$HOME/.cache}/infinitystyle/comfy-test"
else default_env=/work/comfy-test; fi
ENV_DIR="$(mkdir -p "${1:-${INFINITYSTYLE_COMFY_ENV:-$default_env}}" && cd "${1:-${INFINITYSTYLE_COMFY_ENV:-$default_env}}" && pwd)"

TARBALLS=""
for candidate in "${INFINITYSTYLE_COMFY_TARBALLS:-}" "$REPO/../shared/comfyui" /work/shared/comfyui; do
  if [[ -n "$candidate" && -f "$candidate/$COMFYUI_TARBALL" && -f "$candidate/$GGUF_TARBALL" ]]; then
    TARBALLS="$(cd "$candidate" && pwd)"; break
  fi
done
if [[ -z "$TARBALLS" ]]; then
  echo "build_comfyui.sh: no folder holds $COMFYUI_TARBALL and $GGUF_TARBALL (looked in" \
       "\$INFINITYSTYLE_COMFY_TARBALLS='${INFINITYSTYLE_COMFY_TARBALLS:-}', $REPO/../shared/comfyui and" \
       "/work/shared/comfyui). Set INFINITYSTYLE_COMFY_TARBALLS to the folder that holds them." >&2
  exit 2
fi

say() { echo "build_comfyui: $*"; }

# done_already STEP KEY: true when STEP was built from KEY; mark STEP KEY records it.
done_already() { [[ -f "$ENV_DIR/.stamp-$1" && "$(cat "$ENV_DIR/.stamp-$1")" == "$2" ]]; }
mark() { echo "$2" > "$ENV_DIR/.stamp-$1"; }

unpack() {  # unpack TARBALL TOP: the tarball's TOP folder, fresh, in ENV_DIR
  local key; key="$(sha256sum "$TARBALLS/$1" | cut -d' ' -f1)"
  if done_already "$2" "$key"; then return; fi
  say "unpacking $1"
  rm -rf "${ENV_DIR:?}/$2"
  tar -xzf "$TARBALLS/$1" -C "$ENV_DIR" "$2"
  mark "$2" "$key"
}
unpack "$COMFYUI_TARBALL" ComfyUI
unpack "$GGUF_TARBALL" ComfyUI-GGUF

PY="$ENV_DIR/venv/bin/python"
# (pip's warnings about this machine's local index folders say nothing about the build)
pip_install() { "$PY" -m pip install -q --disable-pip-version-check "$@" 2> >(grep -v "^WARNING: Location '.*' is ignored" >&2); }

# torch: the CPU build's file where this machine keeps one (pip's find-links), else the registry's.
torch_wheel="$(ls /opt/wheels/torch-"$TORCH"+cpu-*.whl 2>/dev/null | head -n1 || true)"
# ComfyUI's own (torch and torchvision apart, see below), the pack's and ComfyUI-GGUF's (a GGUF check
# links it into custom_nodes).
requirements="$(cat "$ENV_DIR/ComfyUI/requirements.txt" "$REPO/requirements.txt" "$ENV_DIR/ComfyUI-GGUF/requirements.txt" \
                | sed 's/#.*//' | grep -vE '^\s*(torch|torchvision|torchaudio)?\s*$')"
venv_key="$(printf '%s\n' "$TORCH" "$torch_wheel" "$TORCHVISION" "$requirements" pytest playwright | sha256sum | cut -d' ' -f1)"
if ! done_already venv "$venv_key"; then
  say "building the venv (torch $TORCH, the requirements of ComfyUI, the pack and ComfyUI-GGUF, pytest, playwright)"
  rm -rf "$ENV_DIR/venv"
  python3 -m venv "$ENV_DIR/venv"
  pip_install "${torch_wheel:-torch==$TORCH}"
  # The registry's torchvision for torch 2.13.0 is a CUDA build: --no-deps keeps the CPU torch, and
  # having it in place first keeps spandrel (which needs it) from pulling another torch.
  pip_install --no-deps "torchvision==$TORCHVISION"
  pip_install -r <(echo "$requirements") pytest playwright
  # Its nms/qnms fake kernels are registered unguarded, and this torch has no torchvision ops:
  # guard them as the file guards the others (seen in ../shared/comfyui/README.md).
  meta="$("$PY" -c 'import importlib.util as u; print(u.find_spec("torchvision").submodule_search_locations[0])')/_meta_registrations.py"
  sed -i -E 's/^@(torch\.library\.register_fake\("torchvision::q?nms"\))$/@(lambda f: f) if not torchvision.extension._has_ops() else \1/' "$meta"
  [[ "$(grep -c '^@(lambda f: f) if not torchvision.extension._has_ops()' "$meta")" == 2 ]] || {
    echo "build_comfyui.sh: could not guard torchvision's nms/qnms registrations in $meta" >&2; exit 1; }
  "$PY" - <<EOF
import torch, torchvision, playwright, pytest
assert torch.__version__ == "$TORCH+cpu" or torch.__version__.startswith("$TORCH"), torch.__version__
print("torch", torch.__version__, "torchvision", torchvision.__version__)
EOF
  mark venv "$venv_key"
fi

front_end_dir="$ENV_DIR/frontend-$NEWEST_FRONT_END"
if ! done_already frontend "$NEWEST_FRONT_END"; then
  say "installing comfyui-frontend-package $NEWEST_FRONT_END into $front_end_dir"
  rm -rf "$front_end_dir"
  pip_install --no-deps --target "$front_end_dir" "comfyui-frontend-package==$NEWEST_FRONT_END"
  mark frontend "$NEWEST_FRONT_END"
fi

if [[ ! -x "${INFINITYSTYLE_CHROMIUM:-/usr/bin/chromium}" ]]; then
  say "installing Debian's chromium"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi

say "ready: ComfyUI $ENV_DIR/ComfyUI, Python $PY, front end $NEWEST_FRONT_END in $front_end_dir"
echo "$ENV_DIR"
