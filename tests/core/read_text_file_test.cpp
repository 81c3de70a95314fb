// read_text_file: whole files of any size, /proc files (size 0, text anyway), pipes, errors.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include "dseek/core/error.h"
#include "dseek/core/mapped_file.h"

namespace dseek {
namespace {

namespace fs = std::filesystem;

fs::path temp_path(const char* name) {
  return fs::temp_directory_path() / ("dseek_read_text_" + std::to_string(::getpid()) + "_" + name);
}

TEST(ReadTextFile, WholeFileAnySize) {
  for (size_t n : {size_t(0), size_t(1), size_t(4095), size_t(3) << 20}) {
    std::string text(n, '\0');
    for (size_t i = 0; i < n; ++i) text[i] = char(i * 7 + 3);  // NUL bytes included
    const fs::path p = temp_path("whole");
    std::ofstream(p, std::ios::binary).write(text.data(), std::streamsize(n));
    EXPECT_EQ(read_text_file(p.string()), text) << n << " bytes";
    fs::remove(p);
  }
}

TEST(ReadTextFile, ProcFileReportsSizeZero) {
  const std::string status = read_text_file("/proc/self/status");
  EXPECT_NE(status.find("Name:"), std::string::npos);
}

TEST(ReadTextFile, Pipe) {
  const fs::path p = temp_path("fifo");
  ASSERT_EQ(::mkfifo(p.c_str(), 0600), 0);
  const std::string text(100000, 'x');
  std::thread writer([&] { std::ofstream(p, std::ios::binary) << text; });
  const std::string got = read_text_file(p.string());
  writer.join();
  fs::remove(p);
  EXPECT_EQ(got, text);
}

TEST(ReadTextFile, MissingFileNamesThePath) {
  try {
    read_text_file("/nonexistent/dseek.json");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/dseek.json"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace dseek
