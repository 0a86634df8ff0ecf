#pragma once
// Multi-head attention for inference on the CPU at GEMM speed. Per (image, head) it runs
// S = q kᵀ · Dh^-0.5 and O = P v as two oneDNN batch-reduce GEMMs (brgemm, the micro-kernel
// LibTorch's CPU flash attention calls, here over the whole sequence at once), with the softmax
// vectorised in between and its normalisation folded into O's rows. q and v are read in place
// from the qkv projection and the heads are written side by side, so no permute, transpose of
// the output or per-block rescaling is done (the flash kernel works in small tiles and rescales
// its accumulators per key block). Whether it is faster than LibTorch's kernels depends on the
// CPU, so cpu_kernels measures it once per dtype (docs/benchmarks.md has the figures).
//
// bfloat16 inputs are computed in float32 inside (oneDNN's bf16 brgemm needs AMX; without it,
// float32 here is faster than LibTorch's bf16 flash kernel) and returned in bfloat16.
//
// The softmax has an AVX-512, an AVX2 and a plain copy, chosen by LibTorch's CPU capability
// (ATEN_CPU_CAPABILITY lowers it; ONEDNN_MAX_CPU_ISA lowers the GEMMs').

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace thinkingvit::models {

// The longest sequence taken (the scores of one head are kept whole, N x N floats per thread).
inline constexpr int64_t kGemmAttentionMaxTokens = 1024;

// Whether oneDNN's float32 brgemm runs on this CPU (probed once, on a small problem checked
// against a plain loop), unless THINKINGVIT_GEMM_ATTENTION=0 turns the kernel off.
bool gemm_attention_available();

// True where gemm_attention runs: available, no gradient recorded, a CPU float32 or bfloat16
// B x N x 3k tensor with k divisible by `heads` and 0 < N <= kGemmAttentionMaxTokens.
bool gemm_attention_supported(const at::Tensor& qkv, int64_t heads);

// qkv: B x N x 3k laid out as [q | k | v], each k = H x Dh -> B x N x k in qkv's dtype:
// softmax(q kᵀ · Dh^-0.5) v per head, heads concatenated. Not differentiable.
at::Tensor gemm_attention(const at::Tensor& qkv, int64_t heads);

// The softmax copy in use: "avx512", "avx2" or "plain" (for logs and tests).
const char* gemm_attention_isa();

}  // namespace thinkingvit::models
