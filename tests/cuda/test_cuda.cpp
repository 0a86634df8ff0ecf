// GPU checks (ctest label `cuda`): each test skips itself, and ctest reports it as skipped,
// where no CUDA GPU is visible. scripts/gpu_check.sh runs them on a GPU host.

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "../test_util.h"
#include "../train/tiny_config.h"
#include "thinkingvit/data/loader.h"
#include "thinkingvit/data/open.h"
#include "thinkingvit/io/safetensors.h"
#include "thinkingvit/models/elastic_model.h"
#include "thinkingvit/models/entropy.h"
#include "thinkingvit/train/distributed.h"
#include "thinkingvit/train/trainer.h"
#include "thinkingvit/util/async_copy.h"
#include "thinkingvit/util/device.h"
#include "thinkingvit/util/process_group.h"

namespace thinkingvit::testing {

namespace {

#define REQUIRE_GPU()                                                     \
  do {                                                                    \
    if (!compat::cuda_available()) GTEST_SKIP() << "no CUDA GPU visible"; \
  } while (0)

const c10::Device kGpu(c10::kCUDA, 0);

models::ThinkingViT model_with(models::AttentionBackend backend, const c10::Device& device) {
  auto options = tiny_options({1, 2, 3});
  options.attention(backend);
  models::ThinkingViT model(options);
  randomize(model, /*seed=*/3, /*alpha=*/0.4);
  model->to(device);
  return model;
}

struct Pass {
  std::vector<at::Tensor> logits;           // per stage, on the CPU
  std::map<std::string, at::Tensor> grads;  // per parameter, on the CPU
};

// Every stage's logits and the gradient of sum(logits²) over all stages.
Pass run(models::ThinkingViT& model, const at::Tensor& images, bool bf16) {
  model->zero_grad();
  Pass pass;
  at::Tensor loss;
  {
    compat::AutocastGuard autocast(images.device().type(), at::kBFloat16, bf16);
    for (const auto& out : model->forward_all(images)) {
      pass.logits.push_back(out.logits.to(torch::kCPU, torch::kFloat));
      const auto term = out.logits.to(torch::kFloat).pow(2).sum();
      loss = loss.defined() ? loss + term : term;
    }
  }
  loss.backward();
  for (const auto& item : model->named_parameters())
    pass.grads[item.key()] = item.value().grad().to(torch::kCPU);
  return pass;
}

// A threshold that sends some but not all samples past stage 0, as far as it can from every
// entropy that decides an exit (stages 0 and 1 of a three-stage model): the midpoint of the widest
// gap between consecutive entropies that splits stage 0's. Decisions then hold although a
// sub-batch (gathered, or padded to a captured size) rounds differently from the whole batch.
double splitting_tau(const std::vector<models::StageOutput>& all) {
  const auto h0 = models::entropy(all[0].logits.to(at::kFloat)).cpu();
  const auto h1 = models::entropy(all[1].logits.to(at::kFloat)).cpu();
  auto sorted = std::get<0>(torch::cat({h0, h1}).sort());
  double best = -1, tau = 0;
  for (int64_t i = 0; i + 1 < sorted.size(0); ++i) {
    const double lo = sorted[i].item<double>(), hi = sorted[i + 1].item<double>();
    const double mid = (lo + hi) / 2;
    const int64_t stop = (h0 < mid).sum().item<int64_t>();
    if (stop > 0 && stop < h0.size(0) && hi - lo > best) {
      best = hi - lo;
      tau = mid;
    }
  }
  EXPECT_GT(best, 0) << "no threshold splits stage 0's entropies";
  return tau;
}

}  // namespace

TEST(Cuda, SwinMaskedAttentionMatchesTheCpu_CUDA) {
  REQUIRE_GPU();
  // The fused kernel with the relative position bias and shift mask as an additive mask, forward
  // and backward (the mask carries the bias tables' gradients), and early exit, on the GPU.
  compat::set_tf32(false);  // cuDNN convolutions default to TF32; compare in full float32
  auto options = models::model_preset("thinkingvit_swin_cifar");
  torch::manual_seed(11);
  const auto images = torch::randn({4, 3, 32, 32});
  std::vector<std::map<std::string, at::Tensor>> grads;
  std::vector<at::Tensor> logits;
  for (const auto& device : {c10::Device(c10::kCPU), kGpu}) {
    torch::manual_seed(12);
    auto model = models::make_model(options);
    {
      torch::NoGradGuard no_grad;
      for (auto& p : model->named_parameters()) {
        if (p.key().rfind("alpha", 0) == 0) p.value().fill_(0.5);
      }
    }
    model->to(device);
    const auto outs = model->forward_all(images.to(device));
    (outs[0].logits.square().sum() + outs[1].logits.square().sum()).backward();
    logits.push_back(outs[1].logits.cpu());
    std::map<std::string, at::Tensor> g;
    for (const auto& p : model->named_parameters()) g[p.key()] = p.value().grad().cpu();
    grads.push_back(g);
    model->eval();
    torch::NoGradGuard no_grad;
    const auto elastic = model->forward_elastic(images.to(device), 1.0);
    EXPECT_EQ(elastic.logits.device().type(), device.type());
  }
  EXPECT_TRUE(close_scaled(logits[1], logits[0], 1e-3));
  for (const auto& [name, g] : grads[0])
    EXPECT_TRUE(close_scaled(grads[1].at(name), g, 1e-2)) << name;
}

TEST(Cuda, AttentionBackendsMatchTheCpu_CUDA) {
  REQUIRE_GPU();
  compat::set_tf32(false);  // full fp32 matmuls: the comparison is fp32 against fp32
  const auto images = tiny_images(6, /*seed=*/11);
  for (auto backend : {models::AttentionBackend::kFused, models::AttentionBackend::kExplicit,
                       models::AttentionBackend::kSmall}) {
    const std::string name = models::attention_backend_name(backend);
    auto cpu = model_with(backend, c10::Device(c10::kCPU));
    auto gpu = model_with(backend, kGpu);
    cpu->train();
    gpu->train();
    const auto want = run(cpu, images, /*bf16=*/false);
    const auto got = run(gpu, images.to(kGpu), /*bf16=*/false);
    for (size_t s = 0; s < want.logits.size(); ++s)
      EXPECT_TRUE(close_scaled(got.logits[s], want.logits[s], 1e-5)) << name << " stage " << s;
    for (const auto& [param, grad] : want.grads)
      EXPECT_TRUE(close_scaled(got.grads.at(param), grad, 1e-4)) << name << " " << param;
    // bf16 autocast: 8 mantissa bits, so logits within 3% of their largest magnitude.
    const auto half = run(gpu, images.to(kGpu), /*bf16=*/true);
    for (size_t s = 0; s < want.logits.size(); ++s)
      EXPECT_TRUE(close_scaled(half.logits[s], want.logits[s], 3e-2)) << name << " bf16 " << s;
  }
  compat::set_tf32(true);
}

TEST(Cuda, ElasticInferenceEqualsSelectAfterAll_CUDA) {
  REQUIRE_GPU();
  compat::set_tf32(false);
  auto model = model_with(models::AttentionBackend::kFused, kGpu);
  model->eval();
  torch::NoGradGuard no_grad;
  const auto images = tiny_images(32, /*seed=*/5).to(kGpu);
  const auto all = model->forward_all(images);
  const double split = splitting_tau(all);  // some samples stop at stage 0, some go on
  for (double tau : {0.0, split, 10.0}) {
    const auto out = model->forward_elastic(images, tau);
    if (tau == split) {
      EXPECT_GT(out.samples_per_stage[0], out.samples_per_stage[1]);
      EXPECT_GT(out.samples_per_stage[1], 0);
    }
    const auto stage = out.exit_stage.cpu();
    for (int64_t b = 0; b < images.size(0); ++b) {
      int64_t want = 0;
      while (want < 2 && !(models::entropy(all[want].logits[b].unsqueeze(0)).item<float>() < tau))
        ++want;
      ASSERT_EQ(stage[b].item<int64_t>(), want) << "tau " << tau << " sample " << b;
      EXPECT_TRUE(close_scaled(out.logits[b].cpu(), all[want].logits[b].cpu(), 1e-5));
    }
  }
  compat::set_tf32(true);
}

// CUDA graphs: stage forwards replayed at captured sizes (padded sub-batches included) give the
// eager outputs, in float32 and bf16 autocast; a parameter change drops and recaptures them.
TEST(Cuda, CudaGraphsReplayTheEagerStages_CUDA) {
  REQUIRE_GPU();
  compat::set_tf32(false);
  auto model = model_with(models::AttentionBackend::kFused, kGpu);
  model->eval();
  torch::NoGradGuard no_grad;
  const auto images = tiny_images(16, /*seed=*/6).to(kGpu);
  for (const bool bf16 : {false, true}) {
    compat::AutocastGuard autocast(c10::kCUDA, at::kBFloat16, bf16);
    model->set_cuda_graph_sizes({});
    const auto eager_all = model->forward_all(images);
    const double tau = splitting_tau(eager_all);  // later stages run on padded sub-batches
    const auto eager = model->forward_elastic(images, tau);
    ASSERT_LT(eager.samples_per_stage[1], 16) << "bf16 " << bf16;
    model->set_cuda_graph_sizes(models::default_cuda_graph_sizes(16, 4));
    for (int rep = 0; rep < 2; ++rep) {  // capture, then replay
      const auto graphed_all = model->forward_all(images);
      for (size_t s = 0; s < graphed_all.size(); ++s) {
        EXPECT_TRUE(close_scaled(graphed_all[s].logits.to(at::kFloat).cpu(),
                                 eager_all[s].logits.to(at::kFloat).cpu(), bf16 ? 2e-2 : 1e-5))
            << s << " bf16 " << bf16;
      }
      const auto graphed = model->forward_elastic(images, tau);
      EXPECT_TRUE(torch::equal(graphed.exit_stage.cpu(), eager.exit_stage.cpu()));
      EXPECT_EQ(graphed.samples_per_stage, eager.samples_per_stage);
      EXPECT_TRUE(close_scaled(graphed.logits.to(at::kFloat).cpu(),
                               eager.logits.to(at::kFloat).cpu(), bf16 ? 2e-2 : 1e-5));
    }
    EXPECT_GT(model->cuda_graph_count(), 3u) << "bf16 " << bf16;
    // Every stage and size of this dtype in one memory pool, the replays above still exact.
    EXPECT_EQ(model->cuda_graph_pool_count(), 1u) << "bf16 " << bf16;
  }
  // A changed weight drops the graphs: the next call is a new capture that sees it.
  model->set_cuda_graph_sizes({16});
  const auto before = model->run_stage(0, images).logits.cpu();
  model->parameters()[0].add_(0.01);
  const auto after = model->run_stage(0, images).logits.cpu();
  // Releasing the weight cache (as evaluate() does) drops the graphs that read it; replays that
  // follow capture anew, on the gathered-again weights, and still give the same logits.
  ASSERT_GT(model->cuda_graph_count(), 0u);
  model->release_weight_cache();
  EXPECT_EQ(model->cuda_graph_count(), 0u);
  EXPECT_TRUE(close_scaled(model->run_stage(0, images).logits.cpu(), after, 1e-5));
  model->set_cuda_graph_sizes({});
  EXPECT_TRUE(close_scaled(after, model->forward_stage(0, images).logits.cpu(), 1e-5));
  EXPECT_FALSE(torch::allclose(after, before));
  compat::set_tf32(true);
}

// The input copy stream and the deferred read-back: a pinned batch uploaded on the copy stream
// is complete where the current stream uses it, and a read-back holds the values queued before
// it, not those of work queued after it.
TEST(Cuda, UploadAndReadbackOrderTheirStreams_CUDA) {
  REQUIRE_GPU();
  torch::manual_seed(4);
  for (int rep = 0; rep < 3; ++rep) {
    const auto host = torch::randn({64, 3, 224, 224}).pin_memory();
    compat::Upload upload(host, kGpu);
    const auto sum = upload.take().sum({1, 2, 3});  // queued right after the copy
    EXPECT_TRUE(close_scaled(sum.cpu(), host.sum({1, 2, 3}), 1e-5)) << rep;
  }
  // Work queued before the read-back, the read-back, then work that overwrites what was read;
  // nothing reads the device in between.
  auto x = torch::randn({2048, 2048}, torch::TensorOptions().device(kGpu));
  for (int i = 0; i < 20; ++i) x.add_(torch::mm(x, x).mul_(1e-4));
  auto s = x.sum({1});
  const auto expected = s.clone();
  compat::Readback back(s);
  for (int i = 0; i < 20; ++i) s.add_(torch::mm(x, x).sum({1}));
  const auto got = back.get();
  EXPECT_FALSE(got.is_cuda());
  EXPECT_TRUE(torch::equal(got, expected.cpu()));
  EXPECT_FALSE(torch::equal(got, s.cpu()));
}

// A uint8 batch from pinned memory, normalised and erased on the GPU, holds the values the CPU
// gives it (random erasing with probability 1, so the boxes are filled there too).
TEST(Cuda, Uint8BatchesFinishOnTheGpuAsOnTheCpu_CUDA) {
  REQUIRE_GPU();
  data::SyntheticSpec spec;
  spec.image_size = 40;
  data::DataSection section;
  section.dataset = "synthetic";
  section.synthetic_size = 12;
  const auto dataset = data::open_split(section, data::Split::kTrain, spec);
  data::TrainTransformOptions t;
  t.size = 32;
  t.random_erasing = 1.0;
  data::LoaderOptions o;
  o.batch_size = 6;
  o.num_workers = 2;
  o.uint8_batches = true;
  o.pin_memory = true;
  data::DataLoader loader(dataset, data::make_train_transform(t, 3), o);
  loader.start_epoch(0, {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11});
  int64_t batches = 0;
  while (auto batch = loader.next()) {
    ASSERT_TRUE(batch->images.is_pinned());
    ASSERT_TRUE(batch->erase_boxes.defined());
    const auto on_gpu = data::BatchUpload(*batch, kGpu).take();
    ASSERT_TRUE(on_gpu.is_cuda());
    const auto on_cpu = data::BatchUpload(*batch, at::kCPU).take();
    const double scale = on_cpu.abs().max().item<double>();
    EXPECT_LE((on_gpu.cpu() - on_cpu).abs().max().item<double>(), 1e-6 * scale);
    ++batches;
  }
  EXPECT_EQ(batches, 2);
}

TEST(Cuda, OneRankNcclGroupAllReduces_CUDA) {
  REQUIRE_GPU();
#ifndef THINKINGVIT_HAVE_NCCL
  GTEST_SKIP() << "built without NCCL";
#else
  compat::set_current_device(kGpu);
  auto group = compat::make_process_group("nccl", "127.0.0.1", free_port(), 0, 1,
                                          std::chrono::seconds(60), kGpu);
  EXPECT_EQ(group->device(), kGpu);
  auto t = torch::arange(6, torch::TensorOptions().dtype(torch::kFloat).device(kGpu));
  group->all_reduce_sum(t);
  EXPECT_TRUE(torch::equal(t.cpu(), torch::arange(6, torch::kFloat)));
  auto counts = torch::tensor({2.0, 3.0}, torch::kDouble).to(kGpu);  // metric sums: doubles
  group->all_reduce_sum_async(counts)->wait();
  EXPECT_TRUE(torch::equal(counts.cpu(), torch::tensor({2.0, 3.0}, torch::kDouble)));
  group->broadcast(t, 0);
  group->barrier();
  auto on_cpu = torch::ones({2});
  EXPECT_THROW(group->all_reduce_sum(on_cpu), Error);  // NCCL reduces device tensors only
  EXPECT_NO_THROW(group->shutdown());  // as the trainer ends a run: no abort, no hang
#endif
}

// The trainer's gradient path on NCCL: a GradientReducer over a one-rank NCCL group, buckets
// launched from the backward hooks, the used-parameter counts reduced on the GPU. One rank's
// average is its own gradient, so the reduced gradients equal autograd's, exactly.
TEST(Cuda, OneRankNcclGradientReducerKeepsTheGradients_CUDA) {
  REQUIRE_GPU();
#ifndef THINKINGVIT_HAVE_NCCL
  GTEST_SKIP() << "built without NCCL";
#else
  compat::set_current_device(kGpu);
  auto group = compat::make_process_group("nccl", "127.0.0.1", free_port(), 0, 1,
                                          std::chrono::seconds(60), kGpu);
  const auto on_gpu = torch::TensorOptions().device(kGpu);
  auto a = torch::randn({257}, on_gpu).requires_grad_();
  auto b = torch::randn({16, 8}, on_gpu).requires_grad_();
  auto unused = torch::randn({4}, on_gpu).requires_grad_();
  const auto x = torch::randn({257}, on_gpu), y = torch::randn({16, 8}, on_gpu);
  for (bool same_use : {false, true}) {
    // 1 KiB buckets: a and b in buckets of their own.
    train::GradientReducer reducer({a, b, unused}, *group, 1024, same_use);
    for (int step = 0; step < 2; ++step) {
      a.mutable_grad() = at::Tensor();
      b.mutable_grad() = at::Tensor();
      const auto loss = (a * x).sum() + (b * b * y).sum();
      reducer.prepare(loss);
      loss.backward();
      reducer.finish();
      EXPECT_TRUE(torch::equal(a.grad(), x)) << "same_use " << same_use;
      EXPECT_TRUE(torch::allclose(b.grad(), 2 * b.detach() * y, 1e-6, 1e-6));
      EXPECT_FALSE(unused.grad().defined());
    }
    EXPECT_EQ(reducer.used_readbacks(), same_use ? 0 : 2);
  }
  EXPECT_NO_THROW(group->shutdown());
#endif
}

TEST(Cuda, TwoStepsAndAResumeEqualAnUninterruptedRun_CUDA) {
  REQUIRE_GPU();
  TempDir dir;
  auto config = [&](const std::string& name) {
    auto c = tiny_config(dir.file(name));
    c.run.device = "cuda";
    c.data.synthetic_size = 16;  // two steps of 8 per epoch
    c.schedule.epochs = 2;
    c.schedule.warmup_epochs = 0;
    c.precision.tf32 = false;
    return c;
  };
  train::train(config("whole"));
  train::TrainOptions first;
  first.hooks.stop_after_epochs = 1;
  ASSERT_EQ(train::train(config("parts"), first).size(), 1u);
  train::TrainOptions rest;
  rest.resume = true;
  ASSERT_EQ(train::train(config("parts"), rest).size(), 1u);
  for (const auto* file : {"model.safetensors", "ema.safetensors"}) {
    const auto a = io::read_safetensors(dir.file("whole/checkpoints/epoch_0001/") + file).tensors;
    const auto b = io::read_safetensors(dir.file("parts/checkpoints/epoch_0001/") + file).tensors;
    ASSERT_EQ(a.size(), b.size());
    for (const auto& [name, t] : a)
      EXPECT_TRUE(close_scaled(b.at(name), t, 1e-5)) << file << " " << name;
  }
}

}  // namespace thinkingvit::testing
