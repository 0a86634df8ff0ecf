// Loads weights and runs elastic inference through the installed library, the README's example
// ("Using the library"), then checks each image's logits against a golden reference.
//
//   consumer WEIGHTS IMAGES.safetensors TAU HEAD_DIM
// IMAGES holds "images" and, per stage s, the reference "logits.s" (tests/fixtures/tiny_golden).

#include <thinkingvit/io/checkpoint.h>
#include <thinkingvit/io/safetensors.h>
#include <thinkingvit/models/elastic_model.h>

#include <iostream>
#include <string>

int main(int argc, char** argv) {
  if (argc != 5) {
    std::cerr << "usage: consumer WEIGHTS IMAGES TAU HEAD_DIM\n";
    return 2;
  }
  namespace tv = thinkingvit;
  try {
    // --- the README example ---
    const auto weights = tv::io::read_weights(argv[1]);
    const auto options = weights.options ? *weights.options
                                         : tv::io::options_from_state(weights.tensors, weights.path,
                                                                      std::stoi(argv[4]));
    const auto model = tv::models::make_model(options);
    tv::io::load_state_dict(*model, weights.tensors, weights.path);
    model->eval();
    torch::NoGradGuard no_grad;
    const auto file = tv::io::read_safetensors(argv[2]).tensors;
    const auto out = model->forward_elastic(file.at("images"), std::stod(argv[3]));
    // --- out.exit_stage[b]: the stage image b stopped at; out.logits[b]: its logits ---
    double worst = 0;
    for (int64_t b = 0; b < out.logits.size(0); ++b) {
      const int64_t stage = out.exit_stage[b].item<int64_t>();
      const auto want = file.at("logits." + std::to_string(stage))[b];
      const double scale = std::max(1.0, want.abs().max().item<double>());
      worst = std::max(worst, (out.logits[b] - want).abs().max().item<double>() / scale);
      std::cout << "image " << b << ": stage " << stage << ", class "
                << out.logits[b].argmax().item<int64_t>() << "\n";
    }
    std::cout << "largest difference to the reference, relative: " << worst << "\n";
    return worst <= 1e-4 ? 0 : 1;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
}
