// The CUDA backend's switches (PAGODA_LINEAR, PAGODA_PROJ_DTYPE, PAGODA_TP_ALL_REDUCE, PAGODA_TP_LM_HEAD,
// PAGODA_TP_FUSE_NORM, PAGODA_PROFILE, PAGODA_DECODE_MMA, PAGODA_DECODE_MERGE, PAGODA_PDL,
// PAGODA_FUSE_SILU; docs/cuda.md): an environment variable that names one of a few
// choices. Unset or empty means the first; anything else not listed is refused with the choices named.
#pragma once
#include <cstdlib>
#include <initializer_list>
#include <string>

#include "engine/errors.h"

namespace pagoda::cuda {

inline std::string env_choice(const char* name, std::initializer_list<const char*> choices) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return *choices.begin();
  std::string listed;
  for (const char* c : choices) {
    if (std::string(v) == c) return v;
    listed += std::string(listed.empty() ? "" : " or ") + c;
  }
  throw EngineError(std::string(name) + "=" + v + " is not a choice: use " + listed + " (the first is the default; docs/cuda.md)");
}

}  // namespace pagoda::cuda
