// The CPU backend's worker count: OpenMP teams of this size run every parallel loop. Set once when
// a backend is created (0 = one per core).
#pragma once

namespace pagoda::cpu {

int worker_threads();
void set_worker_threads(int n);

}  // namespace pagoda::cpu
