#include "thinkingvit/models/elastic_queue.h"

#include <torch/torch.h>

#include <utility>

#include "thinkingvit/util/error.h"

namespace thinkingvit::models {

ElasticQueues::ElasticQueues(ElasticModel& model, double tau, int64_t batch, EntropyRule rule,
                             int64_t stages)
    : model_(model), tau_(tau), batch_(batch), rule_(rule), fill_(model.num_stages()) {
  TVIT_CHECK(batch > 0, "elastic queues: the batch must be > 0, found ", batch);
  TVIT_CHECK(stages == -1 || (stages >= 1 && stages <= model.num_stages()),
             "elastic queues: stages must be -1 (all) or in [1, ", model.num_stages(), "], found ",
             stages);
  queues_.resize(stages == -1 ? model.num_stages() : stages);
}

void ElasticQueues::push(const at::Tensor& images, const at::Tensor& ids) {
  TVIT_CHECK(images.dim() == 4, "elastic queues: images must be B x C x H x W, found ",
             images.dim(), " dimensions");
  TVIT_CHECK(ids.dim() == 1 && ids.size(0) == images.size(0) && ids.scalar_type() == at::kLong,
             "elastic queues: ids must be ", images.size(0), " int64 values, found ", ids.sizes(),
             " ", ids.scalar_type());
  if (images.size(0) == 0) return;
  queues_[0].chunks.push_back({images, {}, ids.to(images.device())});
  queues_[0].size += images.size(0);
  // Running stage s only feeds stage s + 1: one pass upwards leaves no queue full.
  for (int64_t s = 0; s < num_stages(); ++s) {
    while (queues_[s].size >= batch_) run(s, batch_);
  }
  compact();
}

void ElasticQueues::compact() {
  // A queued view (the rest of a split chunk, or a pushed slice) would keep its whole storage
  // alive: copy it, so that the queues hold only what they count.
  const auto own = [](at::Tensor& t) {
    if (t.defined() && t.storage().nbytes() > static_cast<size_t>(t.nbytes())) t = t.clone();
  };
  for (auto& q : queues_) {
    for (auto& c : q.chunks) {
      own(c.images);
      own(c.tokens);
      own(c.ids);
    }
  }
}

void ElasticQueues::run_oldest(int64_t stage) {
  TVIT_CHECK(stage >= 0 && stage < num_stages(), "elastic queues: stage ", stage,
             " out of range [0, ", num_stages(), ")");
  if (queues_[stage].size > 0) run(stage, std::min(batch_, queues_[stage].size));
  compact();
}

void ElasticQueues::drain() {
  for (int64_t s = 0; s < num_stages(); ++s) {
    while (queues_[s].size > 0) run(s, std::min(batch_, queues_[s].size));
  }
}

ElasticQueues::Chunk ElasticQueues::pop(Queue& queue, int64_t n) {
  std::vector<Chunk> parts;
  for (int64_t left = n; left > 0;) {
    auto& front = queue.chunks.front();
    const int64_t m = front.ids.size(0);
    if (m <= left) {
      parts.push_back(std::move(front));
      queue.chunks.pop_front();
      left -= m;
      continue;
    }
    const auto head = [&](const at::Tensor& t) { return t.defined() ? t.narrow(0, 0, left) : t; };
    const auto tail = [&](const at::Tensor& t) {
      return t.defined() ? t.narrow(0, left, m - left) : t;
    };
    parts.push_back({head(front.images), head(front.tokens), head(front.ids)});
    front = {tail(front.images), tail(front.tokens), tail(front.ids)};
    left = 0;
  }
  queue.size -= n;
  if (parts.size() == 1) return std::move(parts.front());
  std::vector<at::Tensor> images, tokens, ids;
  for (auto& part : parts) {
    images.push_back(std::move(part.images));
    if (part.tokens.defined()) tokens.push_back(std::move(part.tokens));
    ids.push_back(std::move(part.ids));
  }
  // n x C x H x W, n x N x k, n: the parts one after another
  return {at::cat(images), tokens.empty() ? at::Tensor() : at::cat(tokens), at::cat(ids)};
}

void ElasticQueues::run(int64_t stage, int64_t n) {
  auto chunk = pop(queues_[stage], n);
  auto out = model_.run_stage(stage, chunk.images, chunk.tokens);
  const auto h = entropy(out.logits, rule_);  // n
  fill_[stage].calls += 1;
  fill_[stage].images += n;
  const bool last = stage + 1 == num_stages();
  // take_exited selects the answers that stop, of every run at once: a run only records them.
  const auto stop = last ? at::Tensor() : h < tau_;  // n; a NaN entropy goes on
  runs_.push_back({chunk.ids, out.logits, h, stop, stage});
  if (last) return;
  const auto keep_idx = stop.logical_not().nonzero().squeeze(1);
  const int64_t keeps = keep_idx.size(0);
  if (keeps == 0) return;
  auto& next = queues_[stage + 1];
  next.size += keeps;
  if (keeps == n) {
    next.chunks.push_back({std::move(chunk.images), std::move(out.tokens), std::move(chunk.ids)});
    return;
  }
  const auto rows = [&](const at::Tensor& t) { return t.index_select(0, keep_idx); };
  next.chunks.push_back({rows(chunk.images), rows(out.tokens), rows(chunk.ids)});
}

ExitedImages ElasticQueues::take_exited() {
  ExitedImages out;
  if (runs_.empty()) return out;
  const auto device = runs_.front().logits.device();
  std::vector<at::Tensor> ids, logits, entropy, stop;
  std::vector<int64_t> stages, sizes;
  for (auto& run : runs_) {
    const int64_t n = run.ids.size(0);
    stop.push_back(run.stop.defined()
                       ? std::move(run.stop)
                       : torch::ones({n}, torch::dtype(torch::kBool).device(device)));
    ids.push_back(std::move(run.ids));
    logits.push_back(std::move(run.logits));
    entropy.push_back(std::move(run.entropy));
    stages.push_back(run.stage);
    sizes.push_back(n);
  }
  runs_.clear();
  // Every row of every run, then the rows that stopped.
  const auto stage = torch::repeat_interleave(torch::tensor(stages, torch::kLong),
                                              torch::tensor(sizes, torch::kLong))
                         .to(device);
  const auto idx = at::cat(stop).nonzero().squeeze(1);
  out.ids = at::cat(ids).index_select(0, idx);
  out.logits = at::cat(logits).index_select(0, idx);
  out.entropy = at::cat(entropy).index_select(0, idx);
  out.exit_stage = stage.index_select(0, idx);
  return out;
}

int64_t ElasticQueues::queued(int64_t stage) const { return queues_.at(stage).size; }

int64_t ElasticQueues::queued() const {
  int64_t total = 0;
  for (const auto& q : queues_) total += q.size;
  return total;
}

int64_t ElasticQueues::queued_bytes() const {
  int64_t bytes = 0;
  for (const auto& q : queues_) {
    for (const auto& c : q.chunks) {
      bytes += c.images.nbytes() + c.ids.nbytes() + (c.tokens.defined() ? c.tokens.nbytes() : 0);
    }
  }
  return bytes;
}

ElasticOutput forward_elastic_regrouped(ElasticModel& model, const std::vector<at::Tensor>& batches,
                                        double tau, int64_t batch, EntropyRule rule,
                                        int64_t stages) {
  TVIT_CHECK(!batches.empty(), "elastic inference: no batches");
  ElasticQueues queues(model, tau, batch, rule, stages);
  const auto device = batches.front().device();
  int64_t total = 0;
  for (const auto& images : batches) total += images.size(0);
  const auto ids = torch::arange(total, torch::dtype(torch::kLong).device(device));
  int64_t start = 0;
  for (const auto& images : batches) {
    queues.push(images, ids.narrow(0, start, images.size(0)));
    start += images.size(0);
  }
  TVIT_CHECK(total > 0, "elastic inference: the batches hold no images");
  queues.drain();
  const auto exited = queues.take_exited();
  // Back into input order: row i of every output is image i of the stream.
  ElasticOutput out;
  out.logits = torch::empty({total, exited.logits.size(1)}, exited.logits.options())
                   .index_copy_(0, exited.ids, exited.logits);
  out.exit_stage = torch::empty({total}, exited.exit_stage.options())
                       .index_copy_(0, exited.ids, exited.exit_stage);
  out.entropy =
      torch::empty({total}, exited.entropy.options()).index_copy_(0, exited.ids, exited.entropy);
  for (const auto& f : queues.fill()) out.samples_per_stage.push_back(f.images);
  return out;
}

}  // namespace thinkingvit::models
