"""The evaluation harness behind `python -m infinity_core evaluate`: the paper's Table 1 / Table 2
measurements (CLIP text score S_txt, CLIP image score S_img, seconds per image) over prompts x
styles x configurations, with a resumable run and its reports.

clip: CLIP from a local folder and the two cosines. protocol: prompt, style and configuration
inputs. run: the run loop and its folder. report: summary.md, scatter.png, contact sheets.
stats: the mean's 95 % interval. progress: the bar. tiny_clip: a random CLIP folder for tests.
The subcommand itself is `cli/evaluate.py`.
"""
