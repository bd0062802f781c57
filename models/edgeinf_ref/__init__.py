"""edgeinf reference implementation: the PyTorch model, attention policies, GGUF I/O and ggml quantizers
that the C engine is tested against (DESIGN.md §7)."""
