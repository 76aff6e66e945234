"""Weight files, above the network: reading safetensors/.pth (`checkpoint`), sharded folders,
GGUF files and their block formats (`gguf_file`, `ggml`), layers that keep weights in low-bit
form (`lowbit`), the loaders that turn a file into a network (`transformer_file`, `vae_file`,
`t5_files`, `t5_gguf`) and finding the command lines' model files (`model_files`)."""
