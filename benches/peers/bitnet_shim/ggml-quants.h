// Shim (our code): see ggml-bitnet.h.
#pragma once
#include "ggml-bitnet.h"
