// Unit tests of the Jinja interpreter behind ChatTemplate. Every expected string was produced by
// Python Jinja2 3.1.6 configured as transformers configures it (ImmutableSandboxedEnvironment,
// trim_blocks, lstrip_blocks, loopcontrols, transformers' tojson), so these pin dseek to the reference.
#include <gtest/gtest.h>

#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "dseek/core/error.h"
#include "dseek/tokenizer/chat_template.h"
#include "dseek/tokenizer/jinja_eval.h"
#include "dseek/tokenizer/jinja_parser.h"

namespace dseek::jinja {
namespace {

// The conversation most expressions below look at.
constexpr const char* kMessages = R"([
  {"role": "system", "content": "Sys"},
  {"role": "user", "content": "Hi é 😀"},
  {"role": "assistant", "content": "<think>\nhmm\n</think>\n\nHello!"},
  {"role": "user", "content": "Q2"}])";

std::string render_with(std::string_view source, const nlohmann::ordered_json& ctx, const Limits& limits = Limits()) {
  const auto tmpl = parse_template(source, "t");
  Globals g;
  for (auto it = ctx.begin(); it != ctx.end(); ++it) g[it.key()] = Value::from_json(it.value());
  Interpreter in(*tmpl, limits);
  return in.render(g);
}

std::string render(std::string_view source) {
  static const auto ctx = nlohmann::ordered_json{{"messages", nlohmann::ordered_json::parse(kMessages)}};
  return render_with(source, ctx);
}

// The message of the dseek::Error that rendering `source` throws ("" if it does not throw).
std::string error_of(std::string_view source, const Limits& limits = Limits()) {
  try {
    render_with(source, nlohmann::ordered_json{{"messages", nlohmann::ordered_json::parse(kMessages)}}, limits);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// Expects rendering `source` to throw a dseek::Error whose message contains `needle`.
void expect_error(std::string_view source, std::string_view needle) {
  const std::string msg = error_of(source);
  EXPECT_NE(msg.find(needle), std::string::npos) << "source: " << source << "\n error: " << msg;
}

TEST(JinjaWhitespace, TrimBlocksDropsNewlineAfterBlockTags) {
  EXPECT_EQ(render("{% if true %}\nx\n{% endif %}\ny"), "x\ny");
  EXPECT_EQ(render("{# c #}\nz"), "z");
  EXPECT_EQ(render("{{ 'v' }}\nw"), "v\nw");
  EXPECT_EQ(render("{% if true +%}\nx{% endif %}"), "\nx");
}

TEST(JinjaWhitespace, LstripBlocksDropsIndentBeforeBlockTags) {
  EXPECT_EQ(render("a\n    {% if true %}\n    b\n    {% endif %}\nc"), "a\n    b\nc");
  EXPECT_EQ(render("  {% if true %}x{% endif %}"), "x");
  EXPECT_EQ(render("a\n  {{ 'v' }}"), "a\n  v");
  EXPECT_EQ(render("a\n  {%+ if true %}x{% endif %}"), "a\n  x");
  EXPECT_EQ(render("a\n\t {# c #}\nb"), "a\nb");
  EXPECT_EQ(render("a x {% if true %}y{% endif %}"), "a x y");
}

TEST(JinjaWhitespace, DashStripsAllWhitespace) {
  EXPECT_EQ(render("a  \n\n  {%- if true -%}  \n\n b {%- endif %}"), "ab");
  EXPECT_EQ(render("a \n {{- 'v' -}} \n b"), "avb");
  EXPECT_EQ(render("a \n {#- c -#} \n b"), "ab");
  EXPECT_EQ(render("x\n{%- set y = 1 -%}\n\nz"), "xz");
}

TEST(JinjaWhitespace, RawAndTrailingNewline) {
  EXPECT_EQ(render("{% raw %}{{ not evaluated }}{% endraw %}"), "{{ not evaluated }}");
  EXPECT_EQ(render("a {%- raw -%}  {% x %}  {%- endraw %} b"), "a{% x %} b");
  EXPECT_EQ(render("line\n"), "line");
  EXPECT_EQ(render("line\n\n"), "line\n");
  EXPECT_EQ(render("a\r\nb\rc"), "a\nb\nc");
}

TEST(JinjaLoops, LoopVariables) {
  EXPECT_EQ(render("{% for m in messages %}{{ loop.index }}{{ loop.index0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }}{{ loop.revindex }},{% endfor %}"), "10TrueFalse44,21FalseFalse43,32FalseFalse42,43FalseTrue41,");
  EXPECT_EQ(render("{% for i in range(3) %}{{ loop.cycle('a', 'b') }}{{ loop.previtem }}{{ loop.nextitem }};{% endfor %}"), "a1;b02;a1;");
}

TEST(JinjaLoops, FilterElseBreakContinue) {
  EXPECT_EQ(render("{% for m in messages if m.role == 'user' %}{{ loop.index }}:{{ m.content }};{% else %}none{% endfor %}"), "1:Hi é 😀;2:Q2;");
  EXPECT_EQ(render("{% for x in [] %}a{% else %}empty{% endfor %}"), "empty");
  EXPECT_EQ(render("{% for i in range(10) %}{% if i == 2 %}{% continue %}{% endif %}{% if i == 5 %}{% break %}{% endif %}{{ i }}{% endfor %}"), "0134");
}

TEST(JinjaLoops, UnpackingAndIterables) {
  EXPECT_EQ(render("{% for k, v in {'a': 1, 'b': 2}.items() %}{{ k }}={{ v }} {% endfor %}"), "a=1 b=2 ");
  EXPECT_EQ(render("{% for k in {'a': 1, 'b': 2} %}{{ k }}{% endfor %}"), "ab");
  EXPECT_EQ(render("{% for c in 'héllo' %}{{ c }}-{% endfor %}"), "h-é-l-l-o-");
  EXPECT_EQ(render("{% for k, v in {'x': [1, 2]}|items %}{{ k }}{{ v }}{% endfor %}"), "x[1, 2]");
}

TEST(JinjaScoping, SetInsideLoopDoesNotLeak) {
  EXPECT_EQ(render("{% set c = 0 %}{% for i in [1,2,3] %}{% set c = c + 1 %}{{ c }}{% endfor %}{{ c }}"), "1110");
  EXPECT_EQ(render("{% if true %}{% set x = 5 %}{% endif %}{{ x }}"), "5");
}

TEST(JinjaScoping, NamespaceCarriesStateOutOfLoops) {
  EXPECT_EQ(render("{% set ns = namespace(n=0, s='') %}{% for m in messages %}{% set ns.n = ns.n + 1 %}{% set ns.s = ns.s ~ m.role[0] %}{% endfor %}{{ ns.n }} {{ ns.s }}"), "4 suau");
  EXPECT_EQ(render("{% set ns = namespace({'a': 1}, b=2) %}{{ ns.a }}{{ ns.b }}{{ ns.c is defined }}"), "12False");
}

TEST(JinjaScoping, SetForms) {
  EXPECT_EQ(render("{% set a, b = 1, 2 %}{{ a }}{{ b }}{% set t = (1, 2) %}{{ t }}{{ (1,) }}{{ () }}"), "12(1, 2)(1,)()");
  EXPECT_EQ(render("{% set blk %}inner {{ 1 + 1 }}{% endset %}[{{ blk }}]"), "[inner 2]");
  EXPECT_EQ(render("{% macro greet(name, punct='!') %}Hello {{ name }}{{ punct }}{% endmacro %}{{ greet('Bob') }} {{ greet('Ann', punct='?') }} {{ greet(name='Z') }}"), "Hello Bob! Hello Ann? Hello Z!");
  EXPECT_EQ(render("{% filter upper %}shout {{ 'this' }}{% endfilter %}"), "SHOUT THIS");
}

TEST(JinjaExpressions, Arithmetic) {
  EXPECT_EQ(render("{{ 1 + 2 * 3 }} {{ (1 + 2) * 3 }} {{ 7 / 2 }} {{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ -7 % 3 }} {{ 2 ** 10 }} {{ 2 ** -1 }} {{ 1.5 + 1 }} {{ 'a' ~ 1 ~ none ~ true }}"), "7 9 3.5 3 -4 1 2 1024 0.5 2.5 a1NoneTrue");
  EXPECT_EQ(render("{{ 'abc' * 2 }} {{ [1] * 3 }} {{ [1, 2] + [3] }} {{ 'x' + 'y' }} {{ -(3) }} {{ true + 1 }}"), "abcabc [1, 1, 1] [1, 2, 3] xy -3 2");
}

TEST(JinjaExpressions, ComparisonsAndLogic) {
  EXPECT_EQ(render("{{ 1 == 1.0 }} {{ true == 1 }} {{ 'a' < 'b' }} {{ [1, 2] < [1, 3] }} {{ 1 < 2 < 3 }} {{ 3 > 2 > 2 }} {{ 'ell' in 'hello' }} {{ 2 not in [1, 2] }} {{ 'a' in {'a': 1} }}"), "True True True True True False True False True");
  EXPECT_EQ(render("{{ 'yes' if messages else 'no' }} {{ 'yes' if not messages else 'no' }} [{{ 'yes' if false }}] {{ 0 or 'fallback' }} {{ 1 and 'second' }} {{ none or [] }}"), "yes no [] fallback second []");
  EXPECT_EQ(render("{{ not undefined_var is defined }} {{ not 1 == 2 }}"), "True True");
}

TEST(JinjaExpressions, LiteralsPrintLikePython) {
  EXPECT_EQ(render("{{ none }} {{ true }} {{ 1.0 }} {{ 0.1 }} {{ 1e20 }} {{ 1.5e-7 }} {{ 123456789.123 }} {{ [1, 'a', none, true, 1.5] }} {{ {'k': 'v', 'q': \"it's\"} }} {{ \"a\\nb\" }}"), "None True 1.0 0.1 1e+20 1.5e-07 123456789.123 [1, 'a', None, True, 1.5] {'k': 'v', 'q': \"it's\"} a\nb");
  EXPECT_EQ(render("{{ 'a' 'b' }} {{ 0x1F }} {{ 1_000 }} {{ 0b101 }} {{ 0o17 }} {{ 1.5e3 }} {{ '\\u00e9\\x41\\t' }}"), "ab 31 1000 5 15 1500.0 éA\t");
  EXPECT_EQ(render("{{ \"it's\" }} {{ '\"q\"' }} {{ ['it\\'s'] }} {{ [\"a\\tb\"] }} {{ {'a': (1, 'b')} }}"), "it's \"q\" [\"it's\"] ['a\\tb'] {'a': (1, 'b')}");
}

TEST(JinjaExpressions, SubscriptsAttributesSlices) {
  EXPECT_EQ(render("{{ messages[0].content }} {{ messages[0]['role'] }} {{ messages[-1].content }} {{ messages[10] is defined }} {{ messages[0].nope is defined }} {{ messages|length }}"), "Sys system Q2 False False 4");
  EXPECT_EQ(render("{{ 'hello'[1:3] }} {{ 'hello'[::-1] }} {{ [1,2,3,4][1:] }} {{ [1,2,3,4][:-1] }} {{ [1,2,3,4][::2] }} {{ 'héllo'[1] }} {{ 'héllo'[-1] }} {{ messages[1:]|length }}"), "el olleh [2, 3, 4] [1, 2, 3] [1, 3] é o 3");
  EXPECT_EQ(render("{{ {'a': {'b': {'c': 1}}}.a.b.c }} {{ {'items': 1}['items'] }} {{ {'a': 1}.get('a') }} {{ {'a': 1}.get('b', 'dflt') }} {{ {'a': 1}.keys()|list }} {{ {'a': 1}.values()|list }}"), "1 1 1 dflt ['a'] [1]");
}

TEST(JinjaUndefined, BehavesLikeJinjaUndefined) {
  EXPECT_EQ(render("{{ undefined_var }}|{{ undefined_var is defined }}|{{ undefined_var is undefined }}|{{ undefined_var|default('dflt') }}|{{ ''|default('x') }}|{{ ''|default('x', true) }}|{{ undefined_var|length }}|{% if undefined_var %}T{% else %}F{% endif %}|{% for x in undefined_var %}x{% endfor %}|{{ undefined_var ~ 'a' }}|{{ undefined_var == undefined_other }}"), "|False|True|dflt||x|0|F||a|True");
}

TEST(JinjaMethods, StringMethods) {
  EXPECT_EQ(render("{{ messages[2].content.split('</think>')[-1].strip() }}|{{ messages[2].content.split('</think>')[0] }}|{{ 'a b  c'.split() }}|{{ 'a,b,c'.split(',', 1) }}|{{ 'a,b,c'.rsplit(',', 1) }}"), "Hello!|<think>\nhmm\n|['a', 'b', 'c']|['a', 'b,c']|['a,b', 'c']");
  EXPECT_EQ(render("{{ '  x  '.strip() }}|{{ 'xxhixx'.strip('x') }}|{{ '  x  '.lstrip() }}|{{ '  x  '.rstrip() }}|{{ 'hello'.startswith('he') }}|{{ 'hello'.endswith(('lo', 'x')) }}|{{ 'Hello'.upper() }}|{{ 'Hello'.lower() }}|{{ 'hello world'.title() }}|{{ 'abc'.replace('b', 'X') }}|{{ 'abcabc'.find('c') }}|{{ 'a-b'.count('-') }}|{{ '{} and {}'.format('a', 'b') }}|{{ 'ÉCOLE'.lower() }}"), "x|hi|x  |  x|True|True|HELLO|hello|Hello World|aXc|2|1|a and b|école");
}

TEST(JinjaFilters, Common) {
  EXPECT_EQ(render("{{ '  padded '|trim }}|{{ [1,2,3]|length }}|{{ 'héllo'|length }}|{{ {'a':1}|length }}|{{ 42|string }}|{{ [1,2,3]|join(', ') }}|{{ ['a','b']|join }}|{{ [3,1,2]|first }}|{{ [3,1,2]|last }}|{{ 'abc'|upper }}|{{ 'ABC'|lower }}|{{ 'aXbX'|replace('X', '-') }}"), "padded|3|5|1|42|1, 2, 3|ab|3|2|ABC|abc|a-b-");
  EXPECT_EQ(render("{{ {'b': 1, 'a': 2}|items|list }}|{{ [3, 1, 2]|sort }}|{{ [3, 1, 2]|sort(reverse=true) }}|{{ ['b', 'A', 'c']|sort }}|{{ [1, 2, 2, 3]|unique|list }}|{{ [1, 2, 3]|sum }}|{{ [1, 5, 3]|max }}|{{ [1, 5, 3]|min }}|{{ -3|abs }}|{{ '42'|int + 1 }}|{{ '3.5'|float }}|{{ 3.14159|round(2) }}|{{ 2.5|round }}|{{ [1,2,3]|reverse|list }}"), "[('b', 1), ('a', 2)]|[1, 2, 3]|[3, 2, 1]|['A', 'b', 'c']|[1, 2, 3]|6|5|1|3|43|3.5|3.14|2.0|[3, 2, 1]");
  EXPECT_EQ(render("{{ \"%s has %d items\"|format('list', 3) }}|{{ \"a\\nb\\n\\nc\"|indent(2) }}|{{ \"a\\nb\"|indent(2, true) }}|{{ 'hello'|capitalize }}|{{ 'a&b<c>'|e }}|{{ {'b':2,'a':1}|dictsort }}"), "list has 3 items|a\n  b\n\n  c|  a\n  b|Hello|a&amp;b&lt;c&gt;|[('a', 1), ('b', 2)]");
}

TEST(JinjaFilters, SelectMapAttr) {
  EXPECT_EQ(render("{{ messages|selectattr('role', 'equalto', 'user')|map(attribute='content')|join('|') }}|{{ messages|rejectattr('role', 'eq', 'user')|list|length }}|{{ messages|map(attribute='role')|list }}|{{ [1, 0, 2]|select|list }}|{{ [1, 2, 3, 4]|select('odd')|list }}|{{ ['a','b']|map('upper')|list }}|{{ messages|selectattr('tool_calls', 'defined')|list|length }}"), "Hi é 😀|Q2|2|['system', 'user', 'assistant', 'user']|[1, 2]|[1, 3]|['A', 'B']|0");
}

TEST(JinjaFilters, TojsonLikeTransformers) {
  EXPECT_EQ(render("{{ {'b': 1, 'a': [1, 2], 'c': {}}|tojson }}"), "{\"b\": 1, \"a\": [1, 2], \"c\": {}}");
  EXPECT_EQ(render("{{ {'b': 1, 'a': [1, 2], 'c': {}}|tojson(sort_keys=true) }}"), "{\"a\": [1, 2], \"b\": 1, \"c\": {}}");
  EXPECT_EQ(render("{{ {'b': 1, 'a': [1, {'x': none}]}|tojson(indent=2) }}"), "{\n  \"b\": 1,\n  \"a\": [\n    1,\n    {\n      \"x\": null\n    }\n  ]\n}");
  EXPECT_EQ(render("{{ 'é\"\\n\\\\<>&'|tojson }}|{{ 'é😀'|tojson(ensure_ascii=true) }}|{{ [1.0, none, true, 1e100]|tojson }}|{{ {'a': 1}|tojson(separators=(',', ':')) }}"), "\"é\\\"\\n\\\\<>&\"|\"\\u00e9\\ud83d\\ude00\"|[1.0, null, true, 1e+100]|{\"a\":1}");
}

TEST(JinjaTests, TypeTests) {
  EXPECT_EQ(render("{{ 'x' is string }} {{ 1 is string }} {{ {} is mapping }} {{ [] is mapping }} {{ [] is iterable }} {{ 'a' is iterable }} {{ 1 is iterable }} {{ none is none }} {{ 1 is not none }} {{ 1 is number }} {{ 1 is integer }} {{ 1.0 is float }} {{ true is boolean }} {{ 4 is even }} {{ 3 is odd }} {{ 9 is divisibleby 3 }} {{ 'a' is lower }} {{ messages is sequence }} {{ x is defined and x }}"), "True False True False True True False True True True True True True True True True True True False");
}


// ---- errors -----------------------------------------------------------------------------------

TEST(JinjaErrors, SyntaxErrorsCarryLineAndColumn) {
  expect_error("line 1\n{% if x %}\nno end", "t:3:7: unexpected end of template, expected 'elif' or 'else' or 'endif'");
  expect_error("a\nb {{ 1 +* 2 }}", "t:2:9: unexpected '*'");
  expect_error("{{ x", "t:1:1: unexpected end of template, expected '}}'");
  expect_error("\n\n{% endfor %}", "t:3:4: unexpected 'endfor' tag");
  expect_error("{# never closed", "t:1:1: Missing end of comment tag");
  expect_error("{{ 'abc }}", "t:1:4: unterminated string literal");
  expect_error("{{ (1 ] }}", "t:1:7: unexpected ']', expected ')'");
  expect_error("{% include 'x.jinja' %}", "unsupported tag 'include'");
  expect_error("{% break %}", "'break' outside of a for loop");
  // jinja2 rejects unknown filters and tests when it compiles, even in branches never taken.
  expect_error("{% if false %}{{ x|nope }}{% endif %}", "t:1:20: no filter named 'nope'");
  expect_error("{{ x is nope }}", "no test named 'nope'");
}

TEST(JinjaErrors, RuntimeErrorsCarryLine) {
  expect_error("a\n{{ foo.bar }}", "t:2: 'foo' is undefined");
  expect_error("{{ foo['x'] }}", "'foo' is undefined");
  expect_error("{{ undefined_x + 1 }}", "'undefined_x' is undefined");
  expect_error("{{ messages[0].nope.x }}", "'dict object' has no attribute 'nope'");
  expect_error("{{ 1 + 'a' }}", "unsupported operand type(s) for +: 'int' and 'str'");
  expect_error("{{ 'a' < 1 }}", "'<' not supported");
  expect_error("{{ 1 // 0 }}", "integer division or modulo by zero");
  expect_error("{{ 9223372036854775807 + 1 }}", "integer overflow");
  expect_error("{{ [1, 2].append(3) }}", "'list object' has no attribute 'append'");
  expect_error("{% set x = 1 %}{% set x.y = 2 %}", "cannot assign attribute on non-namespace object");
  expect_error("{{ {[1]: 2} }}", "unhashable type: 'list'");
  expect_error("{{ range(200000)|length }}", "MAX_RANGE");
  expect_error("{{ x|tojson }}", "not JSON serializable");
  expect_error("{% for a, b in [1] %}{% endfor %}", "not iterable");
  expect_error("\n\n{{ raise_exception('Conversation roles must alternate') }}",
                        "t:3: template raised an exception: Conversation roles must alternate");
}

// ---- limits -------------------------------------------------------------------------------------

TEST(JinjaLimits, HostileTemplatesStopWithAClearError) {
  Limits small;
  small.max_loop_iterations = 1000;
  EXPECT_NE(error_of("{% for i in range(100) %}{% for j in range(100) %}{% endfor %}{% endfor %}", small)
                .find("for loops ran more than 1000 iterations"),
            std::string::npos);
  // The default limits: 10^5 x 10^5 iterations would take hours; stops after 10^6.
  EXPECT_NE(error_of("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}")
                .find("for loops ran more than 1000000 iterations"),
            std::string::npos);
  // Output doubling: 2^40 bytes requested, stops at the 64 MiB output limit.
  EXPECT_NE(error_of("{% set ns = namespace(s='ab') %}{% for i in range(40) %}{% set ns.s = ns.s + ns.s %}"
                     "{% endfor %}{{ ns.s }}")
                .find("exceeds the limit of 67108864 bytes"),
            std::string::npos);
  EXPECT_NE(error_of("{{ 'x' * 1000000000000 }}").find("output limit"), std::string::npos);
  // Unbounded recursion through a macro.
  EXPECT_NE(error_of("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}").find("recursion deeper than"),
            std::string::npos);
  // Deeply nested source is refused by the parser rather than overflowing the stack.
  EXPECT_NE(error_of("{{ " + std::string(5000, '(') + "1" + std::string(5000, ')') + " }}").find("nested too deeply"),
            std::string::npos);
  std::string chain = "{{ 1";
  for (int i = 0; i < 5000; ++i) chain += " + 1";
  EXPECT_NE(error_of(chain + " }}").find("nested too deeply"), std::string::npos);
  // Values nested by a loop.
  EXPECT_NE(error_of("{% set ns = namespace(x=[]) %}{% for i in range(1000) %}{% set ns.x = [ns.x] %}{% endfor %}")
                .find("nested deeper than"),
            std::string::npos);
  // A namespace stored in itself would be a reference cycle.
  EXPECT_NE(error_of("{% set ns = namespace() %}{% set ns.me = [ns] %}").find("namespace cannot be stored"),
            std::string::npos);
}

// ---- realistic templates ------------------------------------------------------------------------

// In the style of DeepSeek-R1: system prompts joined, reasoning stripped from earlier assistant turns
// with content.split('</think>')[-1], generation prompt opens a <think> block. Indented for
// readability, relying on {%- -%} and lstrip_blocks as real templates do.
constexpr const char* kR1Style = R"JINJA({%- if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}{% endif %}
{%- set ns = namespace(system_prompt='', is_tool=false) %}
{%- for message in messages %}
  {%- if message['role'] == 'system' %}
    {%- set ns.system_prompt = ns.system_prompt + ('\n\n' if ns.system_prompt else '') + message['content'] %}
  {%- endif %}
{%- endfor %}
{{- bos_token }}{{ ns.system_prompt }}
{%- for message in messages %}
  {%- if message['role'] == 'user' %}
    {{- '<｜User｜>' + message['content'] }}
  {%- elif message['role'] == 'assistant' %}
    {%- set content = message['content'] %}
    {%- if '</think>' in content %}
      {%- set content = content.split('</think>')[-1].lstrip() %}
    {%- endif %}
    {{- '<｜Assistant｜>' + content + '<｜end▁of▁sentence｜>' }}
  {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
  {{- '<｜Assistant｜><think>\n' }}
{%- endif %}
)JINJA";

// In the style of DeepSeek-V2.5/V3.2 tool use: tool definitions rendered with tools|tojson, tool calls
// whose arguments are strings or objects, consecutive tool outputs.
constexpr const char* kToolsStyle = R"JINJA({{ bos_token }}
{%- if tools is defined and tools %}
## Tools
You have access to the following tools:
{% for tool in tools %}
### {{ tool.function.name }}
Description: {{ tool.function.description | default('(none)') }}

Parameters: {{ tool.function.parameters | tojson }}
{% endfor %}
IMPORTANT: ALWAYS adhere to this exact format for tool use:
<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>tool_call_name<｜tool▁sep｜>tool_call_arguments<｜tool▁call▁end｜><｜tool▁calls▁end｜>
{% endif %}
{%- for message in messages %}
    {%- if message.role == 'user' %}
<｜User｜>{{ message.content }}
    {%- elif message.role == 'assistant' and message.tool_calls is defined %}
<｜Assistant｜><｜tool▁calls▁begin｜>
        {%- for call in message.tool_calls %}
<｜tool▁call▁begin｜>{{ call.function.name }}<｜tool▁sep｜>{{ call.function.arguments if call.function.arguments is string else call.function.arguments | tojson }}<｜tool▁call▁end｜>
        {%- endfor %}
<｜tool▁calls▁end｜><｜end▁of▁sentence｜>
    {%- elif message.role == 'tool' %}
<｜tool▁output▁begin｜>{{ message.content }}<｜tool▁output▁end｜>
    {%- elif message.role == 'assistant' %}
<｜Assistant｜>{{ message.content }}<｜end▁of▁sentence｜>
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}<｜Assistant｜>{% endif %}
)JINJA";

constexpr const char* kR1Messages = R"([{"role": "system", "content": "Be brief."}, {"role": "system", "content": "Use English."}, {"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "<think>\nsimple\n</think>\n\n4"}, {"role": "user", "content": "and 3+3?"}])";
constexpr const char* kTools = R"([{"type": "function", "function": {"name": "get_weather", "description": "Get the weather", "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "City, e.g. Paris"}, "unit": {"type": "string", "enum": ["c", "f"]}}, "required": ["city"]}}}, {"type": "function", "function": {"name": "now", "parameters": {"type": "object", "properties": {}}}}])";
constexpr const char* kToolMessages = R"([{"role": "user", "content": "Weather in Zürich?"}, {"role": "assistant", "content": null, "tool_calls": [{"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Zürich", "unit": "c"}}}, {"type": "function", "function": {"name": "now", "arguments": "{}"}}]}, {"role": "tool", "content": "{\"temp\": 7}"}, {"role": "tool", "content": "12:00"}, {"role": "assistant", "content": "7 °C at noon."}])";

TEST(JinjaRealistic, R1StyleStripsReasoningFromHistory) {
  const ChatTemplate t = ChatTemplate::parse(kR1Style, "r1");
  const auto msgs = nlohmann::ordered_json::parse(kR1Messages);
  const auto extra = nlohmann::ordered_json{{"bos_token", "<s>"}};
  EXPECT_EQ(t.render(msgs, true, nullptr, extra),
            "<s>Be brief.\n\nUse English.<｜User｜>2+2?<｜Assistant｜>4<｜end▁of▁sentence｜><｜User｜>and 3+3?<｜Assistant｜><think>\n");
  auto first4 = nlohmann::ordered_json::array();
  for (int i = 0; i < 4; ++i) first4.push_back(msgs[size_t(i)]);
  // add_generation_prompt is always passed by ChatTemplate, so the template's default branch is not taken.
  EXPECT_EQ(t.render(first4, false, nullptr, extra), "<s>Be brief.\n\nUse English.<｜User｜>2+2?<｜Assistant｜>4<｜end▁of▁sentence｜>");
}

TEST(JinjaRealistic, ToolDefinitionsWithTojson) {
  const ChatTemplate t = ChatTemplate::parse(kToolsStyle, "tools");
  const auto msgs = nlohmann::ordered_json::parse(kToolMessages);
  const auto tools = nlohmann::ordered_json::parse(kTools);
  const auto extra = nlohmann::ordered_json{{"bos_token", "<s>"}};
  EXPECT_EQ(t.render(msgs, true, &tools, extra), "<s>## Tools\nYou have access to the following tools:\n### get_weather\nDescription: Get the weather\n\nParameters: {\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\", \"description\": \"City, e.g. Paris\"}, \"unit\": {\"type\": \"string\", \"enum\": [\"c\", \"f\"]}}, \"required\": [\"city\"]}\n### now\nDescription: (none)\n\nParameters: {\"type\": \"object\", \"properties\": {}}\nIMPORTANT: ALWAYS adhere to this exact format for tool use:\n<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>tool_call_name<｜tool▁sep｜>tool_call_arguments<｜tool▁call▁end｜><｜tool▁calls▁end｜>\n<｜User｜>Weather in Zürich?<｜Assistant｜><｜tool▁calls▁begin｜><｜tool▁call▁begin｜>get_weather<｜tool▁sep｜>{\"city\": \"Zürich\", \"unit\": \"c\"}<｜tool▁call▁end｜><｜tool▁call▁begin｜>now<｜tool▁sep｜>{}<｜tool▁call▁end｜><｜tool▁calls▁end｜><｜end▁of▁sentence｜><｜tool▁output▁begin｜>{\"temp\": 7}<｜tool▁output▁end｜><｜tool▁output▁begin｜>12:00<｜tool▁output▁end｜><｜Assistant｜>7 °C at noon.<｜end▁of▁sentence｜><｜Assistant｜>");
  auto first = nlohmann::ordered_json::array({msgs[0]});
  EXPECT_EQ(t.render(first, false, nullptr, extra), "<s><｜User｜>Weather in Zürich?");
}

}  // namespace
}  // namespace dseek::jinja
