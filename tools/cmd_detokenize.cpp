// Placeholder until the tokenizer lands (issue 4): reports that the command is not built yet.
#include "commands.h"
#include "dseek/core/error.h"

namespace dseek::cli {
int cmd_detokenize(int, char**) { throw Error("'detokenize' is not implemented yet (issue 4)"); }
}  // namespace dseek::cli
