// Shim (our code): see ggml-bitnet.h.
#pragma once
