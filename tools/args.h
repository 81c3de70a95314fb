// Minimal command-line parsing shared by the subcommands: --flag value and --switch.
#pragma once

#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace dseek::cli {

class Args {
 public:
  // `switches` are flags without a value; every other --name takes one value (given again, the
  // values accumulate: get_all). `short_names` maps single-letter flags ("n") to long ones.
  // Throws dseek::Error on an unknown flag or a missing value.
  Args(int argc, char** argv, const std::set<std::string>& value_flags, const std::set<std::string>& switches,
       const std::map<std::string, std::string>& short_names = {});

  bool has(const std::string& name) const;
  std::optional<std::string> get(const std::string& name) const;  // the last value given
  std::vector<std::string> get_all(const std::string& name) const;
  std::string require(const std::string& name) const;  // throws naming the flag
  std::string get_or(const std::string& name, const std::string& fallback) const;
  long long get_int(const std::string& name, long long fallback) const;
  double get_double(const std::string& name, double fallback) const;
  const std::vector<std::string>& positional() const { return positional_; }

 private:
  std::map<std::string, std::vector<std::string>> values_;
  std::set<std::string> switches_set_;
  std::vector<std::string> positional_;
};

}  // namespace dseek::cli
