// addon.cc: the export table of the native addon. Nothing else lives here.
#include <napi.h>

#include "binding/cuda_host.hpp"
#include "binding/cuda_ops.hpp"
#include "binding/device.hpp"
#include "binding/fewshot_ops.hpp"
#include "binding/ops.hpp"

namespace {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  using namespace maml::binding;
  exports.Set("forward", Napi::Function::New(env, Forward, "forward"));
  exports.Set("lossGrad", Napi::Function::New(env, LossGrad, "lossGrad"));
  exports.Set("hvp", Napi::Function::New(env, Hvp, "hvp"));
  exports.Set("metaGradient", Napi::Function::New(env, MetaGradient, "metaGradient"));
  exports.Set("metaStep", Napi::Function::New(env, MetaStep, "metaStep"));
  exports.Set("metaStepAsync", Napi::Function::New(env, MetaStepAsync, "metaStepAsync"));
  exports.Set("metaStepPacked", Napi::Function::New(env, MetaStepPacked, "metaStepPacked"));
  exports.Set("adaptBatch", Napi::Function::New(env, AdaptBatch, "adaptBatch"));
  exports.Set("adaptBatchAsync", Napi::Function::New(env, AdaptBatchAsync, "adaptBatchAsync"));
  exports.Set("setThreads", Napi::Function::New(env, SetThreads, "setThreads"));
  exports.Set("getThreads", Napi::Function::New(env, GetThreads, "getThreads"));
  exports.Set("deviceInfo", Napi::Function::New(env, DeviceInfo, "deviceInfo"));
  exports.Set("buildInfo", Napi::Function::New(env, BuildInfo, "buildInfo"));
  exports.Set("mallocInUse", Napi::Function::New(env, MallocInUse, "mallocInUse"));
  exports.Set("metaGradientCudaHost", Napi::Function::New(env, MetaGradientCudaHost, "metaGradientCudaHost"));
  exports.Set("adaptBatchCudaHost", Napi::Function::New(env, AdaptBatchCudaHost, "adaptBatchCudaHost"));
#ifdef MAML_WITH_CUDA
  exports.Set("cudaLearnerCreate", Napi::Function::New(env, CudaLearnerCreate, "cudaLearnerCreate"));
  exports.Set("cudaLearnerStep", Napi::Function::New(env, CudaLearnerStep, "cudaLearnerStep"));
  exports.Set("cudaLearnerStepAsync", Napi::Function::New(env, CudaLearnerStepAsync, "cudaLearnerStepAsync"));
  exports.Set("cudaLearnerDispose", Napi::Function::New(env, CudaLearnerDispose, "cudaLearnerDispose"));
  exports.Set("cudaLearnerGetState", Napi::Function::New(env, CudaLearnerGetState, "cudaLearnerGetState"));
  exports.Set("cudaLearnerSetState", Napi::Function::New(env, CudaLearnerSetState, "cudaLearnerSetState"));
  exports.Set("cudaLearnerAdapt", Napi::Function::New(env, CudaLearnerAdapt, "cudaLearnerAdapt"));
  exports.Set("cudaLearnerAdaptAsync", Napi::Function::New(env, CudaLearnerAdaptAsync, "cudaLearnerAdaptAsync"));
  exports.Set("cudaMetaGradient", Napi::Function::New(env, CudaMetaGradient, "cudaMetaGradient"));
#endif
  exports.Set("fewshotGradient", Napi::Function::New(env, FewShotGradient, "fewshotGradient"));
  exports.Set("fewshotEvaluate", Napi::Function::New(env, FewShotEvaluate, "fewshotEvaluate"));
  exports.Set("fewshotEvaluateAsync", Napi::Function::New(env, FewShotEvaluateAsync, "fewshotEvaluateAsync"));
  exports.Set("fewshotStep", Napi::Function::New(env, FewShotStep, "fewshotStep"));
  exports.Set("fewshotStepAsync", Napi::Function::New(env, FewShotStepAsync, "fewshotStepAsync"));
  exports.Set("fewshotLogits", Napi::Function::New(env, FewShotLogits, "fewshotLogits"));
  return exports;
}

}  // namespace

NODE_API_MODULE(maml_native, Init)
