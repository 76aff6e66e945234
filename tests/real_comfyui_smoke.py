"""The main graph inside a real ComfyUI (not part of the pytest suite: CI has no ComfyUI).

Run it with ComfyUI's own Python, on a models folder holding the tiny set (or real files under
the tiny names):

    python tests/real_comfyui_smoke.py /path/to/ComfyUI /path/to/InfinityStyle /path/to/models

It loads the pack by file location as ComfyUI does, runs loader -> conditioner -> stages -> style
-> sampler -> decode through the real comfy modules, and checks progress previews and that the
model rode ComfyUI's memory manager.
"""
import asyncio, importlib.util, sys
comfy_dir, pack_dir, models = sys.argv[1:4]
sys.argv = [sys.argv[0], "--cpu"]
sys.path.insert(0, comfy_dir)
import comfy.options
comfy.options.enable_args_parsing()
import comfy.model_management as mm, comfy.utils, folder_paths
spec = importlib.util.spec_from_file_location("InfinityStyle", pack_dir + "/__init__.py",
                                              submodule_search_locations=[pack_dir])
pack = importlib.util.module_from_spec(spec)
sys.modules["InfinityStyle"] = pack
spec.loader.exec_module(pack)
folder_paths.add_model_folder_path("infinity", models + "/infinity")  # as extra_model_paths.yaml would
folder_paths.add_model_folder_path("vae", models + "/vae")
folder_paths.add_model_folder_path("text_encoders", models + "/text_encoders")
extension = asyncio.run(pack.comfy_entrypoint())
asyncio.run(extension.on_load())
nodes = {c.GET_SCHEMA().node_id: c for c in asyncio.run(extension.get_node_list())}
for c in nodes.values():
    c.INPUT_TYPES()
updates = []
comfy.utils.set_progress_bar_global_hook(lambda value, total, preview, node_id=None: updates.append(preview[0]))
files = {"transformer": "tiny-random-infinity.safetensors", "vae": "tiny-random-vae.pth",
         "text_encoder": "tiny-random-t5"}
model, vae, te = nodes["InfinityStyleLoader"].execute(**files, precision="auto").args
cond = nodes["InfinityStyleConditioner"].execute(text_encoder=te, content="a cat", style="ink",
                                                template="{content} in {style}", negative="").args[0]
stages = nodes["InfinityStyleStageScheduler"].execute(
    key_steps="2,3", fine_steps="4-6", feature_init=True, key_sharing=True, query_sharing=True, first_layer=0,
    last_layer=-1, apply_to_uncond=True, key_strength=1.0, fine_strength=1.0).args[0]
import torch
styles = nodes["InfinityStyleStyleImageEncoder"].execute(image=torch.rand(1, 50, 70, 3), weight=1.0).args[0]
codes = nodes["InfinityStyleSampler"].execute(
    model=model, vae=vae, conditioning=cond, styles=styles, stages=stages, seed=1, cfg=3.0, tau=0.5, top_k=900,
    top_p=0.97, aspect="1:1 square", custom_size="1024x1024", pixel_budget="0.06M", batch_size=1).args[0]
image = nodes["InfinityStyleDecode"].execute(vae=vae, codes=codes).args[0]
assert image.shape == (1, 256, 256, 3) and updates == ["JPEG"] * 7, (image.shape, updates)
assert any(p.model.inner is model.obj for p in [m.model for m in mm.current_loaded_models])
print("REAL COMFYUI OK")
