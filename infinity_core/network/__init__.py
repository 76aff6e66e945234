"""The networks, as modules only: the Infinity transformer (attention, RoPE, config), the BSQ VAE
(quantizer, patchify) and the T5 text encoder's wrapper. Nothing here reads a file: `weights`
turns files into these modules."""
