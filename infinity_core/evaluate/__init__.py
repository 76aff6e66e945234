"""The evaluation harness behind `python -m infinity_core evaluate`: the paper's Table 1 / Table 2
measurements (CLIP text score S_txt, read two ways, CLIP image score S_img, seconds per image)
over prompts x styles x configurations, with a resumable run that any number of processes can
share, and its reports.

clip: CLIP from a local folder and the two cosines. protocol: prompt, style and configuration
inputs, and the paper's numbers. settings: what decides an image, the presets, the S_txt
readings. folder: the run folder (run.json, scores.csv and the shares' part files). launch: which
cells a process makes (one process, --shard K/N, torchrun ranks). run: the run loop. report:
summary.md, scatter.png, contact sheets. stats: the mean's 95 % interval. progress: the bar.
tiny_clip: a random CLIP folder for tests. The subcommand itself is `cli/evaluate.py`.
"""
