// Streaming parser of a DeepSeek model's generated text (decoded with special tokens kept) into
// the pieces of an OpenAI chat message: content, reasoning_content and tool calls.
//
// Recognised structure (docs/server.md, "OpenAI protocol"):
//   [<think> REASONING </think>] CONTENT [TOOL CALLS]
//   <think> counts only at the very start of the output (after optional whitespace), or is implied by
//   in_reasoning (an R1-style prompt that ends with "<think>\n"). Leading and trailing newlines of
//   the reasoning and leading newlines of the content after </think> are dropped.
//   TOOL CALLS (only with parse_tools) are
//     <｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>NAME\n```json\nARGS\n```<｜tool▁call▁end｜>
//     [\n<｜tool▁call▁begin｜>...<｜tool▁call▁end｜>]... <｜tool▁calls▁end｜>      (DeepSeek-V3)
//   or <｜tool▁call▁begin｜>NAME<｜tool▁sep｜>ARGS<｜tool▁call▁end｜>             (DeepSeek-V3.1)
//   and may also start at a bare <｜tool▁call▁begin｜>. Text after <｜tool▁calls▁end｜>, and text
//   between calls, is dropped.
//
// Streaming guarantee: for ANY split of the output into push() calls, the deltas concatenated
// (tool calls merged by index) equal those of push(all) + finish(). Text that may still turn out
// to be part of a marker, an incomplete UTF-8 character, and whitespace that may yet be trimmed
// are held back until decided, and only those. Marker text never reaches content when
// parse_tools is set.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace dseek::server {

struct ToolCallDelta {
  int index = 0;          // position of the call in the message (0, 1, ...)
  std::string id;         // "call_" + 24 hex digits; only in a call's first delta
  std::string name;       // only in a call's first delta (complete, never split)
  std::string arguments;  // the next piece of the JSON arguments, without a code fence
};

struct OutputDelta {
  std::string content;
  std::string reasoning;
  std::vector<ToolCallDelta> tool_calls;  // at most one entry per index, in index order

  bool empty() const { return content.empty() && reasoning.empty() && tool_calls.empty(); }

  // Accumulates a later delta: texts concatenated, tool calls merged by index (id and name kept
  // from the first delta, arguments appended). Turns a stream of deltas into the whole message.
  void append(const OutputDelta& d);
};

class OutputParser {
 public:
  // in_reasoning: the prompt already opened a <think> block, so output starts as reasoning.
  // parse_tools: the request had tools (else tool-call markers are plain content).
  OutputParser(bool in_reasoning, bool parse_tools);

  OutputDelta push(std::string_view text);  // any split of the text, even inside a marker or a UTF-8 char
  OutputDelta finish();                     // end of generation: flush held-back text; later pushes are ignored
  bool saw_tool_calls() const { return saw_tool_calls_; }  // -> finish_reason "tool_calls"

 private:
  enum class State {
    kStart,       // nothing decided yet: whitespace, maybe followed by <think>
    kReasoning,   // inside <think>
    kContent,     // plain content
    kToolHead,    // after <｜tool▁call▁begin｜>: the type (V3) or the name (V3.1) up to <｜tool▁sep｜>
    kToolSep,     // after "function<｜tool▁sep｜>": V3 name, or V3.1 arguments of a call named "function"
    kToolName,    // V3 name, up to the newline
    kToolFence,   // V3 "```json\n" before the arguments
    kToolArgs,    // arguments, up to <｜tool▁call▁end｜>
    kToolBetween, // after a call (or a call that could not be parsed): dropped until the next marker
    kDone,        // after <｜tool▁calls▁end｜> or finish(): everything dropped
  };

  // Consumes a prefix of `text` (free of markers of the current state) and returns how much;
  // less than text.size() only when the state changed, so the caller rescans with the new markers.
  size_t feed(std::string_view text);
  void on_marker(std::string_view marker);
  const std::vector<std::string_view>& markers() const;
  void run(bool final);

  void emit_content(std::string_view text);
  void emit_reasoning(std::string_view text);
  void emit_args(std::string_view text);
  void begin_call(std::string name);  // emits the call's first delta (id and name)
  void close_call(bool truncated);    // ends the current call (at a marker, or cut off at finish)

  bool parse_tools_;
  State state_;
  bool finished_ = false;
  bool saw_tool_calls_ = false;
  uint64_t id_seed_;

  std::string pending_;  // input not yet consumed (holds a possible marker prefix or UTF-8 tail)
  OutputDelta out_;      // the delta being built by the current push()/finish()

  std::string start_ws_;           // kStart: whitespace before a possible <think>
  bool reasoning_started_ = false;  // leading newlines of the reasoning are dropped
  std::string reasoning_nl_;       // trailing newlines of the reasoning, held back
  bool skip_content_nl_ = false;   // after </think>: leading newlines of the content are dropped

  int n_calls_ = 0;          // calls emitted so far (the next call's index)
  std::string head_;         // kToolHead text
  std::string name_;         // kToolName text
  int fence_ticks_ = 0;      // kToolFence: backticks seen (3 = fence opened, now in the language tag)
  bool args_started_ = false;  // leading whitespace of the arguments is dropped
  std::string args_tail_;    // trailing whitespace and backticks of the arguments, held back
};

}  // namespace dseek::server
