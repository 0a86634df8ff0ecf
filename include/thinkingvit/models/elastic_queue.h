#pragma once
// Elastic inference with regrouping: a queue per stage of the images that are still undecided,
// shared by every batch (or request) pushed in. A stage runs when its queue holds a full batch,
// so later stages run at the full-batch rate instead of on the few undecided images of one
// batch; drain() (or a deadline's run_oldest) runs what is left. Each image leaves with the
// logits, stage and entropy of the stage it stopped at, under the id it was pushed with; the
// results equal forward_elastic's on the same images, up to the kernels' dependence on the
// batch size.

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <deque>
#include <vector>

#include "thinkingvit/models/elastic_model.h"
#include "thinkingvit/models/entropy.h"

namespace thinkingvit::models {

// Images that left the queues, in the order they left.
struct ExitedImages {
  at::Tensor ids;         // n, int64: the ids they were pushed with
  at::Tensor logits;      // n x K, from the stage each stopped at
  at::Tensor exit_stage;  // n, int64, 0-based
  at::Tensor entropy;     // n, float32, at the exit stage
  int64_t size() const { return ids.defined() ? ids.size(0) : 0; }
};

// How full each stage's batches ran.
struct StageFill {
  int64_t calls = 0;   // forwards run
  int64_t images = 0;  // images they ran on (fill = images / (calls · batch))
};

class ElasticQueues {
 public:
  // Stage batches of `batch` images; a sample stops at the first stage whose entropy is below
  // `tau`. Only the first `stages` stages run (-1: all), the last of them deciding everyone
  // left. The model stays in whatever mode it is in; use under no-grad.
  ElasticQueues(ElasticModel& model, double tau, int64_t batch,
                EntropyRule rule = EntropyRule::kTop10, int64_t stages = -1);

  // Queues B x C x H x W `images` (on the model's device) with their `ids` (B, int64: any
  // values the caller can tell apart) at stage 0, then runs every stage whose queue holds a
  // full batch, lowest stage first; afterwards each queue holds fewer than `batch` images.
  void push(const at::Tensor& images, const at::Tensor& ids);
  // Runs one stage on up to `batch` of its queued images, the longest queued first (a
  // deadline's call); nothing when the queue is empty.
  void run_oldest(int64_t stage);
  // Runs every queue to empty, partial batches included: every image pushed has then exited.
  void drain();
  // The images that exited since the last call (none: ids undefined, size() 0).
  ExitedImages take_exited();

  // The stages these queues run (at most the model's).
  int64_t num_stages() const { return static_cast<int64_t>(queues_.size()); }
  int64_t batch() const { return batch_; }
  double tau() const { return tau_; }
  // Images waiting at `stage`, and at every stage.
  int64_t queued(int64_t stage) const;
  int64_t queued() const;
  // Bytes the queues hold: images, recycled tokens and ids (a queued view of a larger tensor is
  // copied when a push or run_oldest returns, so these are all they keep alive). Between pushes
  // at most (batch - 1) images per stage, with their tokens. (The answers not yet taken, K
  // logits and a few values per image run, are not counted.)
  int64_t queued_bytes() const;
  // Per stage of the model: forwards run and the images they ran on, since construction.
  const std::vector<StageFill>& fill() const { return fill_; }

 private:
  // Images waiting at one stage, as pushed or as a stage's survivors left them.
  struct Chunk {
    at::Tensor images;  // n x C x H x W
    at::Tensor tokens;  // n x N x k of the previous stage; undefined at stage 0
    at::Tensor ids;     // n
  };
  struct Queue {
    std::deque<Chunk> chunks;
    int64_t size = 0;
  };
  // The first `n` images of a queue, removed from it (views where one chunk holds them).
  Chunk pop(Queue& queue, int64_t n);
  void compact();
  void run(int64_t stage, int64_t n);
  // One stage forward's answers, until take_exited selects the rows that stopped.
  struct Run {
    at::Tensor ids, logits, entropy;
    at::Tensor stop;  // n bool; undefined: all stop (the last stage)
    int64_t stage = 0;
  };

  ElasticModel& model_;
  double tau_;
  int64_t batch_;
  EntropyRule rule_;
  std::vector<Queue> queues_;
  std::vector<StageFill> fill_;
  std::vector<Run> runs_;
};

// Elastic inference of a stream of batches through ElasticQueues of `batch` images (drained at
// the end), in input order: the images of `batches` one after another. `stage_entropy` is left
// undefined (an image carries only its exit entropy); samples_per_stage counts the images each
// stage ran.
ElasticOutput forward_elastic_regrouped(ElasticModel& model, const std::vector<at::Tensor>& batches,
                                        double tau, int64_t batch,
                                        EntropyRule rule = EntropyRule::kTop10,
                                        int64_t stages = -1);

}  // namespace thinkingvit::models
