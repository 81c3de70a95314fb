// Placeholder until the forward pass lands (issue 3).
#include "commands.h"
#include "dseek/core/error.h"

namespace dseek::cli {
int cmd_forward(int, char**) { throw Error("'forward' is not implemented yet (issue 3)"); }
}  // namespace dseek::cli
