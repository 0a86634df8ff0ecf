#include "thinkingvit/models/cpu_kernels.h"

#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <functional>
#include <map>
#include <mutex>
#include <optional>

#include "thinkingvit/models/gemm_attention.h"
#include "thinkingvit/util/error.h"

namespace thinkingvit::models::cpu {

namespace {

struct Choice {
  bool onednn_linear = false;
  bool matmul_attention = false;
  bool gemm_attention = false;  // inference: models/gemm_attention.h
};

struct State {
  std::mutex mutex;
  std::optional<KernelPolicy> policy;
  std::map<at::ScalarType, Choice> measured;
};

State& state() {
  static State s;
  return s;
}

KernelPolicy policy_from_env() {
  const char* text = std::getenv("THINKINGVIT_CPU_KERNELS");
  return parse_kernel_policy(text && *text ? text : "auto", "THINKINGVIT_CPU_KERNELS");
}

at::ScalarType compute_type(const at::Tensor& x) {
  if (at::autocast::is_autocast_enabled(at::kCPU)) {
    return at::autocast::get_autocast_dtype(at::kCPU);
  }
  return x.scalar_type();
}

// `t` in `dtype` (a cast only where needed; undefined stays undefined).
at::Tensor to_dtype(const at::Tensor& t, at::ScalarType dtype) {
  return t.defined() && t.scalar_type() != dtype ? t.to(dtype) : t;
}

at::Tensor aten_linear(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b, bool gelu) {
  auto y = at::linear(x, w, b);
  return gelu ? at::gelu(y) : y;
}

at::Tensor matmul_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                            const at::Tensor& mask = {}) {
  const auto sizes = q.sizes().vec();  // B x H x N x Dh
  const int64_t n = sizes[2], dh = sizes[3];
  const double scale = 1.0 / std::sqrt(static_cast<double>(dh));
  const auto q3 = (q * scale).reshape({-1, n, dh});
  const auto k3 = k.reshape({-1, n, dh});
  const auto v3 = v.reshape({-1, n, dh});
  auto scores = at::bmm(q3, k3.transpose(1, 2));  // BH x N x N
  if (mask.defined()) scores = (scores.view({sizes[0], sizes[1], n, n}) + mask).view({-1, n, n});
  scores = at::_softmax(scores, /*dim=*/-1, /*half_to_float=*/false);
  return at::bmm(scores, v3).view(sizes);
}

double elapsed_ms(const std::function<void()>& fn) {
  const auto start = std::chrono::steady_clock::now();
  fn();
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
      .count();
}

// Whether `candidate` is at least 5 % faster than `reference`: both warmed up (first-call
// allocations, oneDNN primitive creation), then timed in 5 rounds whose order alternates, so that
// a clock ramping up or down does not favour either; the fastest call of each counts.
bool clearly_faster(const std::function<void()>& candidate,
                    const std::function<void()>& reference) {
  candidate();
  reference();
  double best_candidate = 1e30, best_reference = 1e30;
  for (int round = 0; round < 5; ++round) {
    if (round % 2 == 0) {
      best_candidate = std::min(best_candidate, elapsed_ms(candidate));
      best_reference = std::min(best_reference, elapsed_ms(reference));
    } else {
      best_reference = std::min(best_reference, elapsed_ms(reference));
      best_candidate = std::min(best_candidate, elapsed_ms(candidate));
    }
  }
  return best_candidate < 0.95 * best_reference;
}

// Whether oneDNN's linear runs in `dtype` here: it refuses bfloat16 on CPUs (or under an ISA cap)
// without AVX-512, and where it refuses, ATen's linear is taken. Probed once per dtype on a tiny
// problem.
bool onednn_linear_runs(at::ScalarType dtype) {
  static std::mutex mutex;
  static std::map<at::ScalarType, bool> runs;
  std::lock_guard<std::mutex> lock(mutex);
  const auto it = runs.find(dtype);
  if (it != runs.end()) return it->second;
  bool ok = at::hasMKLDNN();
  if (ok) {
    try {
      at::NoGradGuard no_grad;
      const c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::DispatchKey::AutocastCPU);
      const auto x = at::full({2, 8}, 0.5, at::TensorOptions().dtype(dtype));
      ok = onednn_linear(x, at::full({4, 8}, 0.25, x.options()), at::Tensor())
               .to(at::kFloat)
               .sub(1.0)
               .abs()
               .max()
               .item<double>() < 1e-2;
    } catch (const std::exception&) {
      ok = false;
    }
  }
  runs[dtype] = ok;
  return ok;
}

// The kernels for `dtype`. Linear: oneDNN's, never measurably slower than ATen's where measured
// (AMD Zen 4, float32: 5-30 % faster than MKL, which runs its AVX2 code there; in bfloat16 ATen's
// CPU linear is oneDNN's matmul already, without the fused epilogue), so not measured: a
// measurement on a busy machine would pick either at random between near-equal options. Attention:
// the flash kernel in float32; in lower precision batched matmuls where they are clearly faster on
// a ViT-Small-sized problem (4 images of 197 tokens, 6 heads of 64; constant operands: the speed
// does not depend on the values, and the random generators are left alone).
//
// Inference attention: the GEMM kernel (models/gemm_attention.h) where it is clearly faster than
// the choice above on the same problem, from the qkv projection's output to the heads side by
// side (the layout change the other kernels need is timed with them).
Choice measure(at::ScalarType dtype) {
  Choice choice;
  choice.onednn_linear = onednn_linear_runs(dtype);
  at::NoGradGuard no_grad;
  const c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::DispatchKey::AutocastCPU);
  const auto q = at::full({4, 6, 197, 64}, 0.1, at::TensorOptions().dtype(dtype));
  if (dtype != at::kFloat) {
    choice.matmul_attention = clearly_faster([&] { matmul_attention(q, q, q); },
                                             [&] { at::scaled_dot_product_attention(q, q, q); });
  }
  const auto qkv = at::full({4, 197, 3 * 384}, 0.1, at::TensorOptions().dtype(dtype));
  if (gemm_attention_supported(qkv, 6)) {
    const auto other = [&] {
      const auto t = qkv.view({4, 197, 3, 6, 64}).permute({2, 0, 3, 1, 4});  // 3 x B x H x N x Dh
      const auto o = choice.matmul_attention ? matmul_attention(t[0], t[1], t[2])
                                             : at::scaled_dot_product_attention(t[0], t[1], t[2]);
      return o.transpose(1, 2).reshape({4, 197, 384});  // B x H x N x Dh -> B x N x k
    };
    choice.gemm_attention = clearly_faster([&] { gemm_attention(qkv, 6); }, other);
  }
  return choice;
}

Choice choice_for(at::ScalarType dtype) {
  auto& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  if (!s.policy) s.policy = policy_from_env();
  if (*s.policy == KernelPolicy::kOneDnn) {
    return {onednn_linear_runs(dtype), true, gemm_attention_available()};
  }
  if (*s.policy == KernelPolicy::kAten) return {};
  auto it = s.measured.find(dtype);
  if (it == s.measured.end()) it = s.measured.emplace(dtype, measure(dtype)).first;
  return it->second;
}

}  // namespace

at::Tensor onednn_linear(const at::Tensor& x2d, const at::Tensor& w, const at::Tensor& b,
                         bool gelu) {
  static const auto op =
      c10::Dispatcher::singleton().findSchemaOrThrow("mkldnn::_linear_pointwise", "");
  torch::jit::Stack stack{x2d,
                          w,
                          b.defined() ? c10::IValue(b) : c10::IValue(),
                          c10::IValue(std::string(gelu ? "gelu" : "none")),
                          c10::IValue(c10::List<std::optional<c10::Scalar>>()),
                          gelu ? c10::IValue(std::string("none")) : c10::IValue()};
  op.callBoxed(&stack);
  return stack.at(0).toTensor();
}

KernelPolicy parse_kernel_policy(const std::string& text, const std::string& what) {
  if (text == "auto") return KernelPolicy::kAuto;
  if (text == "aten") return KernelPolicy::kAten;
  if (text == "onednn") return KernelPolicy::kOneDnn;
  fail(what, ": expected auto, aten or onednn, found '", text, "'");
}

KernelPolicy policy() {
  auto& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  if (!s.policy) s.policy = policy_from_env();
  return *s.policy;
}

void set_policy(KernelPolicy policy) {
  auto& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  s.policy = policy;
  s.measured.clear();
}

bool attention_applies(const at::Tensor& q) {
  if (!q.is_cpu() || !at::hasMKLDNN()) return false;
  const auto dtype = compute_type(q);
  if (dtype != at::kFloat && dtype != at::kBFloat16) return false;
  return policy() != KernelPolicy::kAten;
}

bool applies(const at::Tensor& x) { return !at::GradMode::is_enabled() && attention_applies(x); }

bool gemm_attention_applies(const at::Tensor& qkv, int64_t heads) {
  return applies(qkv) && compute_type(qkv) == qkv.scalar_type() &&
         gemm_attention_supported(qkv, heads) && choice_for(qkv.scalar_type()).gemm_attention;
}

at::Tensor linear(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b, bool gelu) {
  const auto dtype = compute_type(x);
  if (!choice_for(dtype).onednn_linear) return aten_linear(x, w, b, gelu);
  // oneDNN's op is not an autocast op: cast here as autocast would.
  const c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::DispatchKey::AutocastCPU);
  const auto cast = [dtype](const at::Tensor& t) { return to_dtype(t, dtype); };
  auto sizes = x.sizes().vec();
  const auto x2d = cast(x).reshape({-1, sizes.back()});
  sizes.back() = w.size(0);
  return onednn_linear(x2d.is_contiguous() ? x2d : x2d.contiguous(), cast(w).contiguous(), cast(b),
                       gelu)
      .view(sizes);
}

namespace {

// x · wᵀ + b with oneDNN's GEMM forward and for dX (dY · w, w's transpose as a view), MKL's for
// dW (oneDNN is no faster there on transposed views, and slower with transposed copies). w must
// be contiguous: oneDNN takes a slow path for strided weights (a leading slice), 1000x slower.
// Autograd functions take defined tensors only: one without bias, one with.
at::Tensor linear_forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x,
                          const at::Tensor& w, const at::Tensor& b) {
  auto sizes = x.sizes().vec();
  const auto x2d = x.reshape({-1, sizes.back()}).contiguous();
  ctx->save_for_backward({x2d, w});
  ctx->saved_data["x_sizes"] = sizes;
  sizes.back() = w.size(0);
  return onednn_linear(x2d, w, b).view(sizes);
}

torch::autograd::variable_list linear_backward(torch::autograd::AutogradContext* ctx,
                                               const at::Tensor& grad, bool bias) {
  const auto saved = ctx->get_saved_variables();
  const auto& x2d = saved[0];
  const auto& w = saved[1];
  const auto dy = grad.reshape({-1, w.size(0)}).contiguous();
  torch::autograd::variable_list grads(bias ? 3 : 2);
  if (ctx->needs_input_grad(0))
    grads[0] = onednn_linear(dy, w.t(), {}).view(ctx->saved_data["x_sizes"].toIntVector());
  if (ctx->needs_input_grad(1)) grads[1] = at::mm(dy.t(), x2d);
  if (bias && ctx->needs_input_grad(2)) grads[2] = dy.sum(0);
  return grads;
}

struct OneDnnLinear : public torch::autograd::Function<OneDnnLinear> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x,
                            const at::Tensor& w) {
    return linear_forward(ctx, x, w, {});
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    return linear_backward(ctx, grads[0], /*bias=*/false);
  }
};

struct OneDnnLinearBias : public torch::autograd::Function<OneDnnLinearBias> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x,
                            const at::Tensor& w, const at::Tensor& b) {
    return linear_forward(ctx, x, w, b);
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    return linear_backward(ctx, grads[0], /*bias=*/true);
  }
};

}  // namespace

bool training_applies(const at::Tensor& x, const at::Tensor& w) {
  return at::GradMode::is_enabled() && attention_applies(x) && compute_type(x) == at::kFloat &&
         x.scalar_type() == at::kFloat && w.scalar_type() == at::kFloat &&
         onednn_linear_runs(at::kFloat);
}

at::Tensor dense(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b, bool gelu) {
  if (applies(x)) return linear(x, w, b, gelu);
  if (training_applies(x, w)) {
    const auto y = b.defined() ? OneDnnLinearBias::apply(x, w.contiguous(), b)
                               : OneDnnLinear::apply(x, w.contiguous());
    return gelu ? at::gelu(y) : y;
  }
  return aten_linear(x, w, b, gelu);
}

at::Tensor attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                     const at::Tensor& mask) {
  TVIT_CHECK(!mask.defined() || mask.is_floating_point(),
             "cpu::attention: expected an additive floating-point mask, found ",
             mask.defined() ? c10::toString(mask.scalar_type()) : "none");
  const auto dtype = compute_type(q);
  if (!choice_for(dtype).matmul_attention) {
    return at::scaled_dot_product_attention(
        q, k, v, mask.defined() ? std::optional<at::Tensor>(mask) : std::nullopt);
  }
  const c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::DispatchKey::AutocastCPU);
  return matmul_attention(to_dtype(q, dtype), to_dtype(k, dtype), to_dtype(v, dtype),
                          to_dtype(mask, dtype));
}

std::string describe() {
  auto& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  if (!s.policy) s.policy = policy_from_env();
  if (*s.policy == KernelPolicy::kAten) return "aten";
  if (*s.policy == KernelPolicy::kOneDnn) return "linear onednn, attention matmul (forced)";
  std::string out;
  for (const auto& [dtype, choice] : s.measured) {
    out +=
        std::string(out.empty() ? "" : "; ") + "linear " +
        (choice.onednn_linear ? "onednn" : "aten") + ", attention " +
        (choice.matmul_attention ? "matmul" : "flash") +
        (choice.gemm_attention ? std::string(", inference attention gemm/") + gemm_attention_isa()
                               : std::string()) +
        " (" + (dtype == at::kBFloat16 ? "bfloat16" : "float32") + ")";
  }
  return out.empty() ? "auto (nothing measured yet)" : out;
}

}  // namespace thinkingvit::models::cpu
