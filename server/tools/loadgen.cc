// mms-loadgen: a compiled load generator for unary PosService/Swipe, so that the load
// client of `mms bench grpc --driver native` does not take a whole core of the machine
// it measures. `server/tools/loadgen.py` compiles it on first use (g++ and the grpc++ headers,
// Debian's libgrpc++-dev) and runs it; it prints one JSON object.
//
// Every call carries a fresh random 16-byte client id, so each one is a real, durable
// debit (never an idempotent replay). A call counts as a swipe only when its gRPC
// status is OK; every other status is counted by name under "errors".
//
// Closed loop (--rate 0): --streams calls are kept outstanding, each completion starts
// the next one. Open loop (--rate R): calls start on a fixed schedule, R per second,
// whatever the server does; a call's latency runs from its scheduled start, so a stall
// shows in the latency instead of silently lowering the offered rate. Calls that would
// exceed --max-outstanding are not sent and are counted as "skipped".
//
// The request is encoded by hand (SwipeRequest fields 1..3: client_id, card_no,
// amount_fen), so the tool needs no generated code.

#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

using Clock = std::chrono::steady_clock;

namespace {

struct Options {
  std::string target;
  std::string token;
  std::string method = "/mms.v1.PosService/Swipe";
  uint64_t card_base = 10000000;
  uint64_t cards = 10000;
  int streams = 16;
  int connections = 0;  // 0: one per stream, at most 64
  double seconds = 5.0;
  double rate = 0.0;
  int64_t amount_max = 5000;
  int64_t max_outstanding = 20000;
  double deadline_s = 30.0;
  uint64_t seed = 7;
};

void put_varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}

struct Stats {
  std::mutex mu;
  std::vector<int64_t> lat_ns;  // one per finished call, OK or not
  uint64_t ok = 0;
  std::map<std::string, uint64_t> errors;
};

const char* code_name(grpc::StatusCode c) {
  switch (c) {
    case grpc::StatusCode::OK: return "OK";
    case grpc::StatusCode::CANCELLED: return "CANCELLED";
    case grpc::StatusCode::UNKNOWN: return "UNKNOWN";
    case grpc::StatusCode::INVALID_ARGUMENT: return "INVALID_ARGUMENT";
    case grpc::StatusCode::DEADLINE_EXCEEDED: return "DEADLINE_EXCEEDED";
    case grpc::StatusCode::NOT_FOUND: return "NOT_FOUND";
    case grpc::StatusCode::ALREADY_EXISTS: return "ALREADY_EXISTS";
    case grpc::StatusCode::PERMISSION_DENIED: return "PERMISSION_DENIED";
    case grpc::StatusCode::RESOURCE_EXHAUSTED: return "RESOURCE_EXHAUSTED";
    case grpc::StatusCode::FAILED_PRECONDITION: return "FAILED_PRECONDITION";
    case grpc::StatusCode::ABORTED: return "ABORTED";
    case grpc::StatusCode::OUT_OF_RANGE: return "OUT_OF_RANGE";
    case grpc::StatusCode::UNIMPLEMENTED: return "UNIMPLEMENTED";
    case grpc::StatusCode::INTERNAL: return "INTERNAL";
    case grpc::StatusCode::UNAVAILABLE: return "UNAVAILABLE";
    case grpc::StatusCode::DATA_LOSS: return "DATA_LOSS";
    case grpc::StatusCode::UNAUTHENTICATED: return "UNAUTHENTICATED";
    default: return "OTHER";
  }
}

class Driver {
 public:
  explicit Driver(const Options& o) : o_(o) {
    int n = o.connections > 0 ? o.connections : std::min(o.streams, 64);
    for (int i = 0; i < n; ++i) {
      grpc::ChannelArguments args;
      // A channel of its own per connection, as separate tills would have.
      args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
      args.SetInt("mms.loadgen.channel", i);
      auto ch = grpc::CreateCustomChannel(o.target, grpc::InsecureChannelCredentials(), args);
      stubs_.push_back(std::make_unique<grpc::GenericStub>(ch));
      channels_.push_back(ch);
    }
    auth_ = "Bearer " + o.token;
    stats_.lat_ns.reserve(static_cast<size_t>(std::max(1.0, o.rate) * o.seconds * 2) + 100000);
  }

  bool connect() {
    auto until = std::chrono::system_clock::now() + std::chrono::seconds(20);
    for (auto& ch : channels_)
      if (!ch->WaitForConnected(until)) return false;
    return true;
  }

  // Starts one call; `scheduled` is when it should have started (open loop) or now.
  void start(Clock::time_point scheduled, bool chain) {
    struct Call {
      grpc::ClientContext ctx;
      grpc::ByteBuffer req, resp;
      Clock::time_point t0;
    };
    auto* c = new Call();
    c->t0 = scheduled;
    c->ctx.AddMetadata("authorization", auth_);
    c->ctx.set_deadline(std::chrono::system_clock::now() +
                        std::chrono::microseconds(static_cast<int64_t>(o_.deadline_s * 1e6)));
    std::string body;
    {
      std::lock_guard<std::mutex> g(rng_mu_);
      uint64_t hi = rng_(), lo = rng_();
      body.push_back(0x0a);
      body.push_back(16);
      for (int i = 7; i >= 0; --i) body.push_back(static_cast<char>(hi >> (8 * i)));
      for (int i = 7; i >= 0; --i) body.push_back(static_cast<char>(lo >> (8 * i)));
      body.push_back(0x10);
      put_varint(body, o_.card_base + rng_() % o_.cards);
      body.push_back(0x18);
      put_varint(body, 1 + rng_() % static_cast<uint64_t>(o_.amount_max - 1));
    }
    grpc::Slice slice(body);
    c->req = grpc::ByteBuffer(&slice, 1);
    size_t k = next_stub_.fetch_add(1) % stubs_.size();
    outstanding_.fetch_add(1);
    stubs_[k]->UnaryCall(&c->ctx, o_.method, grpc::StubOptions(), &c->req, &c->resp,
                         [this, c, chain](grpc::Status st) {
                           auto t1 = Clock::now();
                           finish(st, t1 - c->t0);
                           delete c;
                           bool more = chain && t1 < end_;
                           if (more) start(Clock::now(), true);
                           if (outstanding_.fetch_sub(1) == 1) {
                             std::lock_guard<std::mutex> g(done_mu_);
                             done_cv_.notify_all();
                           }
                         });
  }

  void finish(const grpc::Status& st, Clock::duration d) {
    std::lock_guard<std::mutex> g(stats_.mu);
    stats_.lat_ns.push_back(std::chrono::duration_cast<std::chrono::nanoseconds>(d).count());
    if (st.ok())
      ++stats_.ok;
    else
      ++stats_.errors[code_name(st.error_code())];
  }

  void run() {
    begin_ = Clock::now();
    end_ = begin_ + std::chrono::microseconds(static_cast<int64_t>(o_.seconds * 1e6));
    if (o_.rate <= 0) {
      for (int i = 0; i < o_.streams; ++i) start(Clock::now(), true);
    } else {
      double interval_ns = 1e9 / o_.rate;
      uint64_t i = 0;
      while (true) {
        auto due = begin_ + std::chrono::nanoseconds(static_cast<int64_t>(i * interval_ns));
        if (due >= end_) break;
        auto now = Clock::now();
        if (due > now) {
          std::this_thread::sleep_until(due);
        }
        if (outstanding_.load() >= o_.max_outstanding)
          ++skipped_;
        else
          start(due, false);
        ++i;
      }
      offered_ = i;
    }
    // Wait for every outstanding call (each ends by its deadline at the latest).
    std::unique_lock<std::mutex> g(done_mu_);
    done_cv_.wait(g, [this] { return outstanding_.load() == 0; });
    finished_ = Clock::now();
  }

  void report() {
    std::lock_guard<std::mutex> g(stats_.mu);
    auto& v = stats_.lat_ns;
    std::sort(v.begin(), v.end());
    auto pct = [&](double p) -> double {
      if (v.empty()) return 0.0;
      size_t idx = static_cast<size_t>(p / 100.0 * static_cast<double>(v.size() - 1) + 0.5);
      return static_cast<double>(v[std::min(idx, v.size() - 1)]) / 1e6;
    };
    // Throughput over the load window: calls still running at its end are waited for
    // and counted, and their tail time is included.
    double elapsed = std::chrono::duration<double>(finished_ - begin_).count();
    std::printf("{\"calls\": %zu, \"ok\": %llu, \"elapsed_s\": %.6f, \"p50_ms\": %.3f, "
                "\"p99_ms\": %.3f, \"max_ms\": %.3f, \"offered\": %llu, \"skipped\": %llu, "
                "\"connections\": %zu, \"errors\": {",
                v.size(), static_cast<unsigned long long>(stats_.ok), elapsed, pct(50), pct(99),
                v.empty() ? 0.0 : static_cast<double>(v.back()) / 1e6,
                static_cast<unsigned long long>(offered_),
                static_cast<unsigned long long>(skipped_), stubs_.size());
    bool first = true;
    for (auto& [k, n] : stats_.errors) {
      std::printf("%s\"%s\": %llu", first ? "" : ", ", k.c_str(), static_cast<unsigned long long>(n));
      first = false;
    }
    std::printf("}}\n");
    std::fflush(stdout);
  }

 private:
  Options o_;
  std::vector<std::shared_ptr<grpc::Channel>> channels_;
  std::vector<std::unique_ptr<grpc::GenericStub>> stubs_;
  std::string auth_;
  std::mutex rng_mu_;
  std::mt19937_64 rng_{std::random_device{}()};
  std::atomic<size_t> next_stub_{0};
  std::atomic<int64_t> outstanding_{0};
  std::mutex done_mu_;
  std::condition_variable done_cv_;
  Stats stats_;
  Clock::time_point begin_, end_, finished_;
  uint64_t offered_ = 0, skipped_ = 0;
};

int usage() {
  std::fprintf(stderr,
               "usage: mms-loadgen --target HOST:PORT --token T [--streams S] [--connections C]\n"
               "       [--seconds T] [--rate R] [--card-base B] [--cards N] [--amount-max A]\n"
               "       [--max-outstanding M] [--deadline-s D] [--method /pkg.Svc/M]\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (i + 1 >= argc) return usage();
    std::string v = argv[++i];
    if (a == "--target") o.target = v;
    else if (a == "--token") o.token = v;
    else if (a == "--method") o.method = v;
    else if (a == "--card-base") o.card_base = std::stoull(v);
    else if (a == "--cards") o.cards = std::stoull(v);
    else if (a == "--streams") o.streams = std::stoi(v);
    else if (a == "--connections") o.connections = std::stoi(v);
    else if (a == "--seconds") o.seconds = std::stod(v);
    else if (a == "--rate") o.rate = std::stod(v);
    else if (a == "--amount-max") o.amount_max = std::stoll(v);
    else if (a == "--max-outstanding") o.max_outstanding = std::stoll(v);
    else if (a == "--deadline-s") o.deadline_s = std::stod(v);
    else return usage();
  }
  if (o.target.empty() || o.streams < 1 || o.cards < 1 || o.seconds <= 0 || o.amount_max < 2)
    return usage();
  Driver d(o);
  if (!d.connect()) {
    std::fprintf(stderr, "mms-loadgen: cannot connect to %s\n", o.target.c_str());
    return 1;
  }
  d.run();
  d.report();
  return 0;
}
