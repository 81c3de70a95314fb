#include "args.h"

#include <cstdlib>

#include "dseek/core/error.h"

namespace dseek::cli {

Args::Args(int argc, char** argv, const std::set<std::string>& value_flags, const std::set<std::string>& switches,
           const std::map<std::string, std::string>& short_names) {
  for (int i = 0; i < argc; ++i) {
    std::string a = argv[i];
    if (a.size() == 2 && a[0] == '-' && a[1] != '-') {
      auto it = short_names.find(a.substr(1));
      if (it == short_names.end()) throw Error("unknown flag " + a);
      a = "--" + it->second;
    }
    if (a.rfind("--", 0) != 0 || a == "--") {
      positional_.push_back(a);
      continue;
    }
    std::string name = a.substr(2), value;
    bool inline_value = false;
    if (auto eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
      inline_value = true;
    }
    if (switches.count(name)) {
      if (inline_value) throw Error("--" + name + " takes no value");
      switches_set_.insert(name);
    } else if (value_flags.count(name)) {
      if (!inline_value) {
        if (i + 1 >= argc) throw Error("--" + name + " needs a value");
        value = argv[++i];
      }
      values_[name].push_back(value);
    } else {
      throw Error("unknown flag --" + name);
    }
  }
}

bool Args::has(const std::string& name) const { return switches_set_.count(name) || values_.count(name); }

std::optional<std::string> Args::get(const std::string& name) const {
  auto it = values_.find(name);
  if (it == values_.end()) return std::nullopt;
  return it->second.back();
}

std::vector<std::string> Args::get_all(const std::string& name) const {
  auto it = values_.find(name);
  return it == values_.end() ? std::vector<std::string>{} : it->second;
}

std::string Args::require(const std::string& name) const {
  auto v = get(name);
  if (!v) throw Error("missing required flag --" + name);
  return *v;
}

std::string Args::get_or(const std::string& name, const std::string& fallback) const {
  auto v = get(name);
  return v ? *v : fallback;
}

long long Args::get_int(const std::string& name, long long fallback) const {
  auto v = get(name);
  if (!v) return fallback;
  char* end = nullptr;
  long long x = std::strtoll(v->c_str(), &end, 10);
  if (v->empty() || *end) throw Error("--" + name + ": not an integer: '" + *v + "'");
  return x;
}

double Args::get_double(const std::string& name, double fallback) const {
  auto v = get(name);
  if (!v) return fallback;
  char* end = nullptr;
  double x = std::strtod(v->c_str(), &end);
  if (v->empty() || *end) throw Error("--" + name + ": not a number: '" + *v + "'");
  return x;
}

}  // namespace dseek::cli
