// thinkingvit: the command-line front end. Each subcommand lives in cmd_<name>.cpp.

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>

#include <c10/util/Exception.h>

#include <iostream>
#include <string>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include "thinkingvit/train/trainer.h"
#include "thinkingvit/util/build_info.h"
#include "thinkingvit/util/error.h"

namespace thinkingvit::apps {
void add_infer_command(CLI::App& root);
void add_macs_command(CLI::App& root);
void add_bench_command(CLI::App& root);
void add_train_command(CLI::App& root);
void add_eval_command(CLI::App& root);
void add_sweep_command(CLI::App& root);
void add_predict_command(CLI::App& root);
void add_data_bench_command(CLI::App& root);
#ifdef THINKINGVIT_HAVE_SERVE
void add_serve_command(CLI::App& root);
#endif
}  // namespace thinkingvit::apps

int main(int argc, char** argv) {
#if defined(__GLIBC__)
  // Decoded images and their intermediates (hundreds of KB, several per sample) would be
  // mmap'ed, page-faulted, zeroed and unmapped on every allocation above glibc's default
  // threshold; kept on the heap they are reused (data-bench: 20-50 % more images/s).
  mallopt(M_MMAP_THRESHOLD, 64 << 20);
  mallopt(M_TRIM_THRESHOLD, 256 << 20);
#endif
  // Logs go to stderr so that stdout carries only results (tables, JSON) for pipes.
  spdlog::set_default_logger(spdlog::stderr_color_mt("thinkingvit"));
  CLI::App app{"thinkingvit: train, evaluate and run ThinkingViT nested vision transformers"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::function<std::string()>(thinkingvit::util::build_summary));
  thinkingvit::apps::add_infer_command(app);
  thinkingvit::apps::add_macs_command(app);
  thinkingvit::apps::add_train_command(app);
  thinkingvit::apps::add_eval_command(app);
  thinkingvit::apps::add_sweep_command(app);
  thinkingvit::apps::add_predict_command(app);
  thinkingvit::apps::add_bench_command(app);
  thinkingvit::apps::add_data_bench_command(app);
#ifdef THINKINGVIT_HAVE_SERVE
  thinkingvit::apps::add_serve_command(app);
#endif
  if (argc > 1 && argv[1][0] != '-') {
    std::string names;
    bool known = false;
    for (const auto* sub : app.get_subcommands({})) {
      known = known || sub->get_name() == argv[1];
      names += (names.empty() ? "" : ", ") + sub->get_name();
    }
    if (!known) {
      std::cerr << "error: unknown command '" << argv[1] << "' (expected one of: " << names
                << ")\n";
      return 2;
    }
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help, --version
    // One line like every other error (CLI11's own text names the flag), and a usage exit code.
    std::cerr << "error: " << e.what() << " (see --help)\n";
    return 2;
  } catch (const thinkingvit::train::Stopped&) {  // SIGTERM / SIGUSR1: the trainer said where
    return thinkingvit::train::kExitStopped;
  } catch (const thinkingvit::Error& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  } catch (const c10::Error& e) {
    std::cerr << "error: " << e.what_without_backtrace() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
