// One exception type for everything the engine reports to its caller: the binding turns it into a
// JS Error with the same message.
#pragma once
#include <stdexcept>
#include <string>

namespace pagoda {

class EngineError : public std::runtime_error {
 public:
  explicit EngineError(const std::string& msg) : std::runtime_error(msg) {}
};

}  // namespace pagoda
