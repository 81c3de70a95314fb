// Helpers shared by test files: scratch directories, small files, assertions on dseek::Error messages.
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>

#include <fstream>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "dseek/core/error.h"

namespace dseek::test {

// A fresh directory under the test temp dir; `tag` names it for humans.
inline std::string make_temp_dir(const std::string& tag = "dseek") {
  std::string tmpl = ::testing::TempDir() + "/" + tag + "_XXXXXX";
  if (::mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed for " + tmpl);
  return tmpl;
}

// Writes text to path (truncating), as tests set up config and data files.
inline void write_text(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
}

// The message of the dseek::Error fn throws, or "<no error>".
inline std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "<no error>";
}

// fn must throw a dseek::Error whose message contains every string of `parts`.
inline void expect_error(const std::function<void()>& fn, const std::vector<std::string>& parts) {
  try {
    fn();
  } catch (const Error& e) {
    const std::string msg = e.what();
    for (const std::string& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "missing '" << p << "' in: " << msg;
    return;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "threw a non-dseek exception: " << e.what();
    return;
  }
  ADD_FAILURE() << "no error thrown; expected one containing '" << (parts.empty() ? "" : parts[0]) << "'";
}

}  // namespace dseek::test
