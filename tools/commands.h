// The dseek subcommands. Each lives in tools/cmd_<name>.cpp, parses its own flags and
// returns the process exit code; library errors (dseek::Error) are caught in main.
#pragma once

namespace dseek::cli {

int cmd_forward(int argc, char** argv);
int cmd_tokenize(int argc, char** argv);
int cmd_detokenize(int argc, char** argv);
int cmd_chat_template(int argc, char** argv);
int cmd_init(int argc, char** argv);
int cmd_generate(int argc, char** argv);
int cmd_chat(int argc, char** argv);
int cmd_bench(int argc, char** argv);
int cmd_quantize(int argc, char** argv);
int cmd_train(int argc, char** argv);
int cmd_plot(int argc, char** argv);
int cmd_serve(int argc, char** argv);

}  // namespace dseek::cli
