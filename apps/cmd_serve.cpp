// thinkingvit serve: a long-running elastic-inference server speaking the KServe v2 / Triton
// REST protocol (JSON tensors and the binary tensor extension), over cpp-httplib. Requests are
// batched into stage queues shared by every request (eval::ElasticScheduler), so the undecided
// images of many requests fill the later stages' batches together.

#include <httplib.h>
#include <pthread.h>
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <array>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstring>
#include <iomanip>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "common.h"
#include "thinkingvit/eval/elastic_scheduler.h"
#include "thinkingvit/util/build_info.h"
#include "thinkingvit/util/error.h"

namespace thinkingvit::apps {

namespace {

using nlohmann::json;

struct ServeArgs {
  std::string weights, host = "127.0.0.1", name = "thinkingvit", entropy_rule = "top10";
  std::string device = "auto";
  ModelChoice model;
  int port = 8000, threads = 0, http_threads = 64;
  double threshold = 1.0, max_delay_ms = 10, max_body_mb = 64;
  int64_t max_batch = 64, max_queue = 4096;
  bool cuda_graphs = false, no_regroup = false;
};

// A request the client got wrong: its HTTP status and one message.
struct BadRequest {
  int status;
  std::string message;
};

[[noreturn]] void refuse(int status, const std::string& message) {
  throw BadRequest{status, message};
}

void reply_error(httplib::Response& res, int status, const std::string& message) {
  res.status = status;
  res.set_content(json{{"error", message}}.dump(), "application/json");
}

// What an infer request asks for: its images, threshold, budget, and which outputs come back
// binary.
struct InferRequest {
  std::string id;
  at::Tensor images;  // N x C x H x W float32
  double tau = 0;
  int64_t stages = -1;  // the stages its images may run (-1: all)
  bool binary_logits = false, binary_exit_stage = false;
  bool want_logits = true, want_exit_stage = true;  // `outputs` may name only some
};

int64_t checked_count(const json& shape, const models::ModelOptions& o, int64_t max_images) {
  if (!shape.is_array() || shape.size() != 4) {
    refuse(400, "input 'images': shape must be [N, C, H, W], found " + shape.dump());
  }
  for (const auto& d : shape) {
    if (!d.is_number_integer() || d.get<int64_t>() < 0) {
      refuse(400, "input 'images': shape must hold non-negative integers, found " + shape.dump());
    }
  }
  const std::vector<int64_t> want = {o.in_channels(), o.image_size(), o.image_size()};
  for (size_t i = 0; i < 3; ++i) {
    if (shape[i + 1].get<int64_t>() != want[i]) {
      refuse(400, "input 'images': shape " + shape.dump() + ", the model expects [N, " +
                      std::to_string(want[0]) + ", " + std::to_string(want[1]) + ", " +
                      std::to_string(want[2]) + "]");
    }
  }
  const int64_t n = shape[0].get<int64_t>();
  if (n > max_images) {
    refuse(413, "input 'images': " + std::to_string(n) + " images, more than the server takes (" +
                    std::to_string(max_images) + ")");
  }
  return n * want[0] * want[1] * want[2];
}

// The numbers of a (nested) JSON list in order; stops past `limit` values (the caller reports
// the count).
void append_numbers(const json& data, std::vector<float>& out, int64_t limit) {
  if (static_cast<int64_t>(out.size()) > limit) return;
  if (data.is_array()) {
    for (const auto& v : data) append_numbers(v, out, limit);
  } else if (data.is_number()) {
    out.push_back(data.get<float>());
  } else {
    refuse(400, "input 'images': data holds " + std::string(data.type_name()) +
                    " where a number belongs");
  }
}

// The images tensor from JSON data (a flat or nested list of numbers) or from the binary part.
at::Tensor read_images(const json& input, const std::string& binary, size_t& offset, int64_t count,
                       const json& shape) {
  auto images = torch::empty({count});
  const auto& params = input.value("parameters", json::object());
  if (params.contains("binary_data_size")) {
    const auto size = params["binary_data_size"];
    if (!size.is_number_unsigned() || size.get<uint64_t>() != static_cast<uint64_t>(count) * 4 ||
        offset + count * 4 > binary.size()) {
      refuse(400, "input 'images': binary_data_size must be " + std::to_string(count * 4) +
                      " bytes (" + std::to_string(count) + " FP32 values) within the body, found " +
                      size.dump() + " with " + std::to_string(binary.size() - offset) +
                      " bytes left");
    }
    std::memcpy(images.data_ptr<float>(), binary.data() + offset, count * 4);
    offset += count * 4;
  } else {
    if (!input.contains("data")) refuse(400, "input 'images': no 'data' and no binary_data_size");
    // Row-major order, whether the list is flat or nested.
    std::vector<float> values;
    values.reserve(static_cast<size_t>(count));
    append_numbers(input["data"], values, count);
    if (static_cast<int64_t>(values.size()) != count) {
      refuse(400, "input 'images': shape " + shape.dump() + " holds " + std::to_string(count) +
                      " values, 'data' holds " + std::to_string(values.size()));
    }
    std::memcpy(images.data_ptr<float>(), values.data(), values.size() * 4);
  }
  return images.view({shape[0].get<int64_t>(), shape[1].get<int64_t>(), shape[2].get<int64_t>(),
                      shape[3].get<int64_t>()});
}

// Which outputs come back, and which of them binary: those the request's `outputs` name (all
// when it names none); parameters.binary_data_output makes every output binary (tritonclient's
// way when it lists none).
void choose_outputs(const json& body, const json& params, InferRequest& out) {
  const bool all_binary = params.value("binary_data_output", false);
  out.binary_logits = out.binary_exit_stage = all_binary;
  const auto outputs = body.value("outputs", json::array());
  if (!outputs.is_array()) refuse(400, "'outputs': expected a list");
  if (!outputs.empty()) out.want_logits = out.want_exit_stage = false;
  for (const auto& o2 : outputs) {
    const auto name = o2.value("name", "");
    const bool binary_out = o2.value("parameters", json::object()).value("binary_data", all_binary);
    if (name == "logits") {
      out.want_logits = true;
      out.binary_logits = binary_out;
    } else if (name == "exit_stage") {
      out.want_exit_stage = true;
      out.binary_exit_stage = binary_out;
    } else {
      refuse(400, "output '" + name + "': this model's outputs are 'logits' and 'exit_stage'");
    }
  }
}

// GMACs of one image that stops at each stage: every stage up to it (released convention).
std::vector<double> cumulative_gmacs(const models::ModelOptions& o) {
  std::vector<double> out;
  double sum = 0;
  for (int64_t s = 0; s < o.num_stages(); ++s) {
    sum += static_cast<double>(o.stage_macs(s).total(models::MacConvention::kReleased)) / 1e9;
    out.push_back(sum);
  }
  return out;
}

// parameters.budget: the most GMACs any image of the request may cost. Its images run the
// stages that fit, the last of them deciding the rest (whatever their entropy).
int64_t stages_within(const json& budget, const models::ModelOptions& o) {
  if (!budget.is_number()) refuse(400, "parameter 'budget': expected GMACs per image, a number");
  const double gmacs = budget.get<double>();
  const auto cost = cumulative_gmacs(o);
  int64_t stages = 0;
  // A budget written as a stage's own total (5.85 for 3H->6H) admits that stage.
  while (stages < o.num_stages() && cost[stages] <= gmacs * (1 + 1e-9)) ++stages;
  if (stages == 0) {
    std::ostringstream message;
    message << "parameter 'budget': " << gmacs << " GMACs per image is below stage 0's "
            << std::setprecision(4) << cost[0] << " GMACs";
    refuse(400, message.str());
  }
  return stages;
}

InferRequest parse_infer(const httplib::Request& req, const models::ModelOptions& o,
                         const ServeArgs& args) {
  size_t json_size = req.body.size();
  if (req.has_header("Inference-Header-Content-Length")) {
    const auto text = req.get_header_value("Inference-Header-Content-Length");
    char* end = nullptr;
    const auto v = std::strtoull(text.c_str(), &end, 10);
    if (text.empty() || *end || v > req.body.size()) {
      refuse(400, "Inference-Header-Content-Length: expected a size up to the body's " +
                      std::to_string(req.body.size()) + " bytes, found '" + text + "'");
    }
    json_size = v;
  }
  json body;
  // Images nest four deep inside inputs: deeper bodies are refused while parsing (a deep one
  // would exhaust the stack of whatever walks it).
  const json::parser_callback_t shallow = [](int depth, json::parse_event_t, json&) {
    if (depth > 12) refuse(400, "request JSON nests deeper than 12 levels");
    return true;
  };
  try {
    body = json::parse(req.body.begin(), req.body.begin() + static_cast<long>(json_size), shallow);
  } catch (const json::exception& e) {
    refuse(400, std::string("malformed JSON: ") + e.what());
  }
  if (!body.is_object() || !body.contains("inputs") || !body["inputs"].is_array() ||
      body["inputs"].size() != 1) {
    refuse(400, "expected {\"inputs\": [one tensor named 'images']}");
  }
  const auto& input = body["inputs"][0];
  if (!input.is_object() || input.value("name", "") != "images") {
    refuse(400, "expected an input named 'images', found " + input.value("name", json()).dump());
  }
  if (input.value("datatype", "") != "FP32") {
    refuse(400, "input 'images': datatype must be FP32, found " +
                    input.value("datatype", json()).dump());
  }
  InferRequest out;
  out.id = body.value("id", json("")).is_string() ? body.value("id", "") : "";
  const auto shape = input.value("shape", json());
  const int64_t count = checked_count(shape, o, args.max_queue);
  const std::string binary = req.body.substr(json_size);
  // Nothing is allocated for more values than the body can hold: 4 bytes each in binary, at
  // least 2 characters each in JSON.
  const bool in_binary = input.value("parameters", json::object()).contains("binary_data_size");
  const auto room = static_cast<int64_t>(in_binary ? binary.size() / 4 : json_size / 2);
  if (count > room) {
    refuse(400, "input 'images': shape " + shape.dump() + " holds " + std::to_string(count) +
                    " values, more than the body's " + std::to_string(req.body.size()) +
                    " bytes can carry");
  }
  size_t offset = 0;
  out.images = read_images(input, binary, offset, count, shape);
  out.tau = args.threshold;
  const auto params = body.value("parameters", json::object());
  if (params.contains("threshold")) {
    if (!params["threshold"].is_number()) refuse(400, "parameter 'threshold': expected a number");
    out.tau = params["threshold"].get<double>();
  }
  if (params.contains("budget")) out.stages = stages_within(params["budget"], o);
  choose_outputs(body, params, out);
  return out;
}

// The response: JSON outputs, or the JSON header then the binary tensors where asked for.
void reply_answer(httplib::Response& res, const InferRequest& request,
                  const eval::ElasticAnswer& answer, const std::string& name) {
  const int64_t n = answer.exit_stage.size(0), k = answer.logits.size(1);
  const auto logits = answer.logits.contiguous();
  const auto stages = answer.exit_stage.to(torch::kInt).contiguous();
  std::string binary;
  const auto output = [&](const char* out_name, const char* dtype, std::vector<int64_t> shape,
                          const void* data, size_t bytes, bool as_binary, auto values) {
    json o = {{"name", out_name}, {"datatype", dtype}, {"shape", shape}};
    if (as_binary) {
      o["parameters"] = {{"binary_data_size", bytes}};
      binary.append(static_cast<const char*>(data), bytes);
    } else {
      o["data"] = values();
    }
    return o;
  };
  json body = {{"model_name", name}};
  if (!request.id.empty()) body["id"] = request.id;
  body["outputs"] = json::array();
  if (request.want_logits) {
    body["outputs"].push_back(output(
        "logits", "FP32", {n, k}, logits.data_ptr<float>(), n * k * 4, request.binary_logits, [&] {
          return std::vector<float>(logits.data_ptr<float>(), logits.data_ptr<float>() + n * k);
        }));
  }
  if (request.want_exit_stage) {
    body["outputs"].push_back(output(
        "exit_stage", "INT32", {n}, stages.data_ptr<int>(), n * 4, request.binary_exit_stage,
        [&] { return std::vector<int>(stages.data_ptr<int>(), stages.data_ptr<int>() + n); }));
  }
  const auto header = body.dump();
  res.status = 200;
  const bool any_binary = (request.want_logits && request.binary_logits) ||
                          (request.want_exit_stage && request.binary_exit_stage);
  if (!any_binary) {
    res.set_content(header, "application/json");
    return;
  }
  res.set_header("Inference-Header-Content-Length", std::to_string(header.size()));
  res.set_content(header + binary, "application/octet-stream");
}

// Requests, latency and codes for /metrics, with the scheduler's own counters.
class Metrics {
 public:
  void record(int status, double seconds) {
    std::lock_guard<std::mutex> lock(mutex_);
    ++codes_[status];
    sum_ += seconds;
    ++count_;
    for (size_t b = 0; b < kBuckets.size(); ++b)
      if (seconds <= kBuckets[b]) ++buckets_[b];
  }
  std::string text(const eval::SchedulerStats& s, int64_t batch) const {
    std::lock_guard<std::mutex> lock(mutex_);
    std::ostringstream out;
    out << "# HELP thinkingvit_requests_total Infer requests answered, by HTTP status.\n"
        << "# TYPE thinkingvit_requests_total counter\n";
    for (const auto& [code, n] : codes_)
      out << "thinkingvit_requests_total{code=\"" << code << "\"} " << n << "\n";
    out << "# HELP thinkingvit_request_duration_seconds Infer request latency.\n"
        << "# TYPE thinkingvit_request_duration_seconds histogram\n";
    for (size_t b = 0; b < kBuckets.size(); ++b) {
      out << "thinkingvit_request_duration_seconds_bucket{le=\"" << kBuckets[b] << "\"} "
          << buckets_[b] << "\n";
    }
    out << "thinkingvit_request_duration_seconds_bucket{le=\"+Inf\"} " << count_ << "\n"
        << "thinkingvit_request_duration_seconds_sum " << std::setprecision(12) << sum_
        << std::setprecision(6) << "\n"
        << "thinkingvit_request_duration_seconds_count " << count_ << "\n";
    out << "# HELP thinkingvit_stage_batch_fill Mean share of a stage batch filled.\n"
        << "# TYPE thinkingvit_stage_batch_fill gauge\n";
    for (size_t st = 0; st < s.fill.size(); ++st) {
      const double fill = s.fill[st].calls ? static_cast<double>(s.fill[st].images) /
                                                 static_cast<double>(s.fill[st].calls * batch)
                                           : 0.0;
      out << "thinkingvit_stage_batch_fill{stage=\"" << st << "\"} " << fill << "\n";
    }
    out << "# HELP thinkingvit_stage_forwards_total Stage forwards run.\n"
        << "# TYPE thinkingvit_stage_forwards_total counter\n";
    for (size_t st = 0; st < s.fill.size(); ++st)
      out << "thinkingvit_stage_forwards_total{stage=\"" << st << "\"} " << s.fill[st].calls
          << "\n";
    out << "# HELP thinkingvit_exits_total Images that exited at each stage.\n"
        << "# TYPE thinkingvit_exits_total counter\n";
    for (size_t st = 0; st < s.exits.size(); ++st)
      out << "thinkingvit_exits_total{stage=\"" << st << "\"} " << s.exits[st] << "\n";
    out << "# HELP thinkingvit_queued_images Images admitted and not yet answered.\n"
        << "# TYPE thinkingvit_queued_images gauge\n"
        << "thinkingvit_queued_images " << s.queued_images << "\n"
        << "# TYPE thinkingvit_refused_total counter\n"
        << "thinkingvit_refused_total " << s.refused << "\n"
        << "# TYPE thinkingvit_deadline_drains_total counter\n"
        << "thinkingvit_deadline_drains_total " << s.deadline_drains << "\n";
    return out.str();
  }

 private:
  static constexpr std::array<double, 12> kBuckets = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                      0.1,   0.25,   0.5,   1,    2.5,   5};
  mutable std::mutex mutex_;
  std::map<int, int64_t> codes_;
  std::array<int64_t, kBuckets.size()> buckets_{};
  double sum_ = 0;
  int64_t count_ = 0;
};

json metadata(const ServeArgs& args, const models::ModelOptions& o) {
  json stages = json::array();
  for (int64_t s = 0; s < o.num_stages(); ++s) stages.push_back(o.stage_heads(s));
  return {{"name", args.name},
          {"platform", "thinkingvit"},
          {"versions", {"1"}},
          {"inputs",
           {{{"name", "images"},
             {"datatype", "FP32"},
             {"shape", {-1, o.in_channels(), o.image_size(), o.image_size()}}}}},
          {"outputs",
           {{{"name", "logits"}, {"datatype", "FP32"}, {"shape", {-1, o.num_classes()}}},
            {{"name", "exit_stage"}, {"datatype", "INT32"}, {"shape", {-1}}}}},
          {"parameters",
           {{"stages", stages},
            {"stage_gmacs", cumulative_gmacs(o)},
            {"threshold", args.threshold},
            {"entropy", args.entropy_rule},
            {"max_batch", args.max_batch},
            {"max_delay_ms", args.max_delay_ms}}}};
}

// POST /v2/models/{name}/infer: parse, queue, wait, answer; one structured log line each.
void handle_infer(const httplib::Request& req, httplib::Response& res, const ServeArgs& args,
                  const models::ModelOptions& o, eval::ElasticScheduler& scheduler,
                  Metrics& metrics) {
  const auto start = std::chrono::steady_clock::now();
  int64_t images = 0;
  try {
    if (req.matches[1] != args.name)
      refuse(404, "no model '" + std::string(req.matches[1]) + "'; this server serves '" +
                      args.name + "'");
    auto request = parse_infer(req, o, args);
    images = request.images.size(0);
    const auto answer = scheduler.submit(request.images, request.tau, request.stages).get();
    reply_answer(res, request, answer, args.name);
  } catch (const BadRequest& e) {
    reply_error(res, e.status, e.message);
  } catch (const json::exception& e) {
    reply_error(res, 400, std::string("request: ") + e.what());
  } catch (const eval::Overloaded& e) {
    res.set_header("Retry-After", "1");
    reply_error(res, 503, std::string("overloaded: ") + e.what());
  } catch (const eval::ShuttingDown& e) {
    reply_error(res, 503, e.what());
  } catch (const std::exception& e) {
    reply_error(res, 500, e.what());
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  metrics.record(res.status, seconds);
  spdlog::info("request remote={} images={} status={} ms={:.2f}", req.remote_addr, images,
               res.status, 1000 * seconds);
}

void add_routes(httplib::Server& server, const ServeArgs& args, const models::ModelOptions& o,
                eval::ElasticScheduler& scheduler, Metrics& metrics,
                const std::atomic<bool>& draining) {
  server.Get("/v2", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(json{{"name", "thinkingvit"},
                         {"version", util::kVersion},
                         {"extensions", {"binary_tensor_data"}}}
                        .dump(),
                    "application/json");
  });
  server.Get("/v2/health/live", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("{}", "application/json");
  });
  server.Get("/v2/health/ready", [&](const httplib::Request&, httplib::Response& res) {
    if (draining) return reply_error(res, 503, "draining");
    res.set_content("{}", "application/json");
  });
  server.Get(R"(/v2/models/([^/]+)(/ready)?)",
             [&](const httplib::Request& req, httplib::Response& res) {
               if (req.matches[1] != args.name) {
                 return reply_error(res, 404,
                                    "no model '" + std::string(req.matches[1]) +
                                        "'; this server serves '" + args.name + "'");
               }
               res.set_content(metadata(args, o).dump(), "application/json");
             });
  server.Post(R"(/v2/models/([^/]+)/infer)",
              [&](const httplib::Request& req, httplib::Response& res) {
                handle_infer(req, res, args, o, scheduler, metrics);
              });
  server.Get("/metrics", [&](const httplib::Request&, httplib::Response& res) {
    res.set_content(metrics.text(scheduler.stats(), args.max_batch), "text/plain; version=0.0.4");
  });
  server.set_payload_max_length(static_cast<size_t>(args.max_body_mb * 1024 * 1024));
  server.set_keep_alive_timeout(1);  // an idle connection delays a drain by at most 1 s
  // The errors cpp-httplib answers by itself (no route, a body over the limit) get a message.
  server.set_error_handler([&](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    std::string message = "HTTP " + std::to_string(res.status);
    if (res.status == 413) {
      message = "request body larger than the limit (--max-body-mb " +
                std::to_string(args.max_body_mb) +
                "; a form-encoded body only 8 KiB: send Content-Type: application/json)";
    }
    if (res.status == 404) message = "no route " + req.method + " " + req.path;
    reply_error(res, res.status, message);
  });
}

void run_serve(const ServeArgs& args) {
  // SIGTERM / SIGINT go to one thread that stops the server; every other thread blocks them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  set_threads(args.threads);
  const auto device = use_device(args.device, "--device");
  eval::SchedulerOptions so;
  so.max_batch = args.max_batch;
  so.max_delay_ms = args.max_delay_ms;
  so.max_queued_images = args.max_queue;
  so.rule = models::parse_entropy_rule(args.entropy_rule, "--entropy");
  so.regroup = !args.no_regroup;
  const auto [options, model] = load_model(args.weights, args.model, /*strict=*/false, device);
  TVIT_CHECK(!args.cuda_graphs || device.is_cuda(), "--cuda-graphs: needs a CUDA device, found '",
             device.str(), "'");
  if (args.cuda_graphs)
    model->set_cuda_graph_sizes(models::default_cuda_graph_sizes(args.max_batch));
  eval::ElasticScheduler scheduler(*model, device, so);
  Metrics metrics;
  std::atomic<bool> draining{false};
  httplib::Server server;
  server.new_task_queue = [&] { return new httplib::ThreadPool(args.http_threads); };
  add_routes(server, args, options, scheduler, metrics, draining);
  TVIT_CHECK(server.bind_to_port(args.host, args.port), "--host ", args.host, " --port ", args.port,
             ": cannot listen there (in use, or not an address of this machine)");
  std::atomic<bool> ended{false};
  std::thread stopper([&] {
    int signal = 0;
    sigwait(&stop_signals, &signal);
    if (ended) return;  // the server ended by itself and woke this thread
    spdlog::info("{}: draining in-flight requests, then exiting", strsignal(signal));
    draining = true;
    scheduler.finish();  // answers every admitted request now, refuses new ones (503)
    // stop() acts only on a running server: a signal during start-up waits for it to run.
    while (!ended && !server.is_running())
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    server.stop();  // stops accepting; the handlers in flight finish first
  });
  spdlog::info("serving '{}' on http://{}:{} (tau {}, batch {}, max delay {} ms, queue {} images)",
               args.name, args.host, args.port, args.threshold, args.max_batch, args.max_delay_ms,
               args.max_queue);
  const bool listened = draining || server.listen_after_bind();
  ended = true;
  if (!draining) pthread_kill(stopper.native_handle(), SIGTERM);
  stopper.join();
  scheduler.finish();
  TVIT_CHECK(listened, "--host ", args.host, " --port ", args.port,
             ": the server stopped accepting");
  spdlog::info("stopped: {} requests answered", scheduler.stats().requests);
}

}  // namespace

void add_serve_command(CLI::App& root) {
  auto args = std::make_shared<ServeArgs>();
  auto* cmd = root.add_subcommand(
      "serve", "Serve elastic inference over HTTP (KServe v2 / Triton REST protocol)");
  cmd->add_option("--weights", args->weights,
                  "weights: a safetensors file or a Hugging Face style folder")
      ->required();
  args->model.add_flags(*cmd, /*with_head_dim=*/true);
  cmd->add_option("--host", args->host, "address to listen on")->capture_default_str();
  cmd->add_option("--port", args->port, "port to listen on")
      ->check(CLI::Range(1, 65535))
      ->capture_default_str();
  cmd->add_option("--name", args->name, "the model's name in the URLs")->capture_default_str();
  cmd->add_option("--threshold", args->threshold,
                  "default entropy threshold tau (a request's parameters.threshold overrides it)")
      ->check(any_number())
      ->capture_default_str();
  cmd->add_option("--entropy", args->entropy_rule, "entropy rule: top10 (released) or full (paper)")
      ->capture_default_str();
  cmd->add_option("--max-batch", args->max_batch, "images per stage forward")
      ->check(at_least(1))
      ->capture_default_str();
  cmd->add_option("--max-delay-ms", args->max_delay_ms,
                  "longest an image waits in the stage queues before they drain")
      ->check(at_least(0))
      ->capture_default_str();
  cmd->add_option("--max-queue", args->max_queue,
                  "images admitted and not yet answered; past it, 503 with Retry-After")
      ->check(at_least(1))
      ->capture_default_str();
  cmd->add_option("--max-body-mb", args->max_body_mb, "largest request body (413 above)")
      ->check(positive())
      ->capture_default_str();
  cmd->add_option("--http-threads", args->http_threads, "connections served at once")
      ->check(at_least(1))
      ->capture_default_str();
  cmd->add_flag("--no-regroup", args->no_regroup,
                "run each request's early exit alone, in batches of --max-batch (for comparison)");
  cmd->add_flag("--cuda-graphs", args->cuda_graphs,
                "replay CUDA graphs of the stage forwards at the batch sizes the queues run (GPU)");
  add_device_flag(*cmd, args->device);
  add_threads_flag(*cmd, args->threads);
  cmd->callback([args] { run_serve(*args); });
}

}  // namespace thinkingvit::apps
