#pragma once
// Kernels for the CPU: oneDNN linears and the attention choice.
//
// ATen's float32 linear goes through MKL's (or OpenBLAS's) sgemm; oneDNN, which LibTorch carries
// too, is markedly faster on some CPUs (on AMD Zen 4, where MKL runs its AVX2 code, oneDNN's fp32
// linear is 5-30 % faster) and fuses the bias and GELU into the GEMM's epilogue; in bfloat16,
// ATen's CPU linear is oneDNN's matmul already, with bias and GELU as separate passes. So
// inference takes oneDNN's fused linear wherever LibTorch has oneDNN. For attention at ViT
// lengths the flash kernel wins in float32, while in bfloat16 batched matmuls win on CPUs
// without AMX (1.5x on Zen 4) and may lose with it: that choice is measured once per process and
// dtype on a ViT-sized problem (a few milliseconds) and kept. Inference attention may take this
// project's GEMM kernel (models/gemm_attention.h) instead, measured the same way.
//
// The fused linears are used where no gradient is recorded (inference under no-grad); float32
// training takes oneDNN's GEMM for the forward and the input's gradient; the attention choice
// holds in training too; on CPU tensors only, everything else takes ATen's ops.
// THINKINGVIT_CPU_KERNELS=aten turns all of it off (ATen's linear and fused attention everywhere);
// =onednn forces oneDNN linears and matmul attention.

#include <ATen/core/Tensor.h>

#include <string>

namespace thinkingvit::models::cpu {

enum class KernelPolicy {
  kAuto,    // oneDNN linears; attention measured once per reduced-precision dtype
  kAten,    // at::linear, at::gelu, at::scaled_dot_product_attention
  kOneDnn,  // oneDNN linear (bias and GELU fused), batched-matmul attention
};

// "auto" | "aten" | "onednn" -> a policy; anything else is an Error naming `what`.
KernelPolicy parse_kernel_policy(const std::string& text, const std::string& what);

// The policy in force: THINKINGVIT_CPU_KERNELS (auto | aten | onednn) unless set_policy was
// called. An unknown value is an Error naming the variable.
KernelPolicy policy();
void set_policy(KernelPolicy policy);  // for tests and benchmarks; forgets earlier measurements

// True when `x` takes these kernels: a CPU tensor, no gradient being recorded, float32 or
// bfloat16 compute (bfloat16 also when CPU autocast is on), LibTorch built with oneDNN, policy
// not kAten.
bool applies(const at::Tensor& x);

// x · wᵀ + b (b may be undefined), then exact (erf) GELU when `gelu`. Under CPU autocast the
// operands are cast to its dtype, as at::linear does. Call only where applies(x).
at::Tensor linear(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b, bool gelu);

// oneDNN's linear alone, whatever the policy (2-D x and w of one dtype; b may be undefined):
// for measurements. Call only where at::hasMKLDNN().
at::Tensor onednn_linear(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b,
                         bool gelu = false);

// True when a float32 linear on `x` takes oneDNN while gradients are recorded (training): a CPU
// tensor, float32 compute (no bf16 autocast), LibTorch built with oneDNN, policy not kAten.
bool training_applies(const at::Tensor& x, const at::Tensor& w);
// What model code calls: linear() where applies(x); where training_applies(x, w), a
// differentiable linear with oneDNN's GEMM forward and for the input's gradient (5-20 % faster
// than MKL's on AMD; the weight's gradient stays MKL's); else at::linear (and at::gelu).
at::Tensor dense(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b, bool gelu = false);

// True when attention on `q` takes the measured kernel: as applies(), but also while gradients
// are recorded (batched matmuls and softmax differentiate as they are; in bfloat16 without AMX
// their forward and backward take 2.4x less time than the flash kernel's).
bool attention_applies(const at::Tensor& q);

// True when inference attention on a B x N x 3k `qkv` takes models::gemm_attention: as
// applies(qkv), qkv already in the compute dtype, gemm_attention_supported, and (policy kAuto)
// measured clearly faster than the kernel attention() would take, once per dtype; always under
// kOneDnn where the CPU runs it.
bool gemm_attention_applies(const at::Tensor& qkv, int64_t heads);

// softmax(q kᵀ · Dh^-0.5 + mask) v for q, k, v: B x H x N x Dh (any strides) and an optional
// additive float mask broadcastable to B x H x N x N (Swin's relative position bias and shift
// mask), differentiable. Call only where attention_applies(q).
at::Tensor attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                     const at::Tensor& mask = {});

// What is in force, for logs: e.g. "linear onednn, attention flash (float32); linear onednn,
// attention matmul (bfloat16)"; "aten" under kAten; a dtype not measured yet is left out.
std::string describe();

}  // namespace thinkingvit::models::cpu
