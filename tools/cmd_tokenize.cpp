// Placeholder until the tokenizer lands (issue 4): reports that the command is not built yet.
#include "commands.h"
#include "dseek/core/error.h"

namespace dseek::cli {
int cmd_tokenize(int, char**) { throw Error("'tokenize' is not implemented yet (issue 4)"); }
}  // namespace dseek::cli
