// Conversions between JS values and the engine's C++ structs. Every reader validates the JS type and
// throws a TypeError naming the field, so a facade bug surfaces as a clear message, never a crash.
#pragma once
#include <napi.h>

#include "engine/backend.h"
#include "engine/model_config.h"
#include "engine/step.h"
#include "engine/weights.h"

namespace pagoda::binding {

ModelConfig read_model_config(const Napi::Object& o);
std::vector<TensorEntry> read_tensors(const Napi::Array& a);
EngineOptions read_engine_options(const Napi::Object& o);
StepInput read_step(const Napi::Object& o);
Napi::Object write_step_output(Napi::Env env, StepOutput&& out, const StepInput& in);
Napi::Object write_backend_info(Napi::Env env, const BackendInfo& info);

}  // namespace pagoda::binding
