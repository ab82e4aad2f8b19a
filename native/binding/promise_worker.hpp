// promise_worker.hpp: a Napi::AsyncWorker that runs job.run() on the libuv pool and settles a
// promise: resolved with finish(env, job, keep_alive), or rejected with a coded Error. The job
// is a baton of plain C++ values; run() makes no Node-API call. keep_alive holds the JavaScript
// objects whose memory the job reads or writes (for example a learner's state arrays).
// Used by ops.cc (meta-steps, adaptation) and fewshot_ops.cc.
#pragma once
#include <napi.h>

#include <functional>
#include <memory>
#include <new>
#include <string>

#include "args.hpp"

namespace maml::binding {

template <class Job>
class JobWorker : public Napi::AsyncWorker {
 public:
  using Finish = std::function<Napi::Value(const Napi::Env&, Job&, const Napi::Object&)>;
  JobWorker(const Napi::Env& env, std::unique_ptr<Job> job, const Napi::Object& keep_alive, Finish finish)
      : Napi::AsyncWorker(env),
        deferred_(Napi::Promise::Deferred::New(env)),
        job_(std::move(job)),
        finish_(std::move(finish)) {
    keep_ = Napi::Persistent(keep_alive);
  }
  Napi::Promise promise() const { return deferred_.Promise(); }

  void Execute() override {
    try {
      job_->run();
    } catch (const Error& e) {
      fail(e.code(), e.what());
    } catch (const std::bad_alloc&) {
      fail(Code::OutOfMemory, "out of memory: a native allocation failed");
    } catch (const std::exception& e) {
      fail(Code::Internal, std::string("internal error: ") + e.what());
    }
  }
  void OnOK() override {
    Napi::Env env = Env();
    if (failed_) {
      deferred_.Reject(make_error(env, code_, message_).Value());
      return;
    }
    try {
      deferred_.Resolve(finish_(env, *job_, keep_.Value()));
    } catch (const Napi::Error& e) {
      deferred_.Reject(e.Value());
    }
  }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

  // Queues job and returns its promise.
  static Napi::Promise start(const Napi::Env& env, std::unique_ptr<Job> job, const Napi::Object& keep_alive,
                             Finish finish) {
    auto* w = new JobWorker(env, std::move(job), keep_alive, std::move(finish));
    Napi::Promise p = w->promise();
    w->Queue();
    return p;
  }

 private:
  void fail(Code c, std::string m) {
    code_ = c;
    message_ = std::move(m);
    failed_ = true;
  }
  Napi::Promise::Deferred deferred_;
  std::unique_ptr<Job> job_;
  Napi::ObjectReference keep_;
  Finish finish_;
  bool failed_ = false;
  Code code_ = Code::Internal;
  std::string message_;
};

}  // namespace maml::binding
