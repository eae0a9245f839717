// Helpers shared by the C++ tests: where the real test data live, and scratch directories.
#pragma once
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

namespace ep::test {

// Real models and text come from ENTROPRUNE_TEST_DATA (default ../shared/data relative to the repo).
inline std::string data_dir() {
  const char* env = std::getenv("ENTROPRUNE_TEST_DATA");
  if (env && *env) return env;
  return std::string(ENTROPRUNE_SOURCE_DIR) + "/../shared/data";
}

inline bool have_data(const std::string& rel) {
  std::ifstream f(data_dir() + "/" + rel);
  return f.good();
}

#define REQUIRE_DATA(rel)                                                                                  \
  do {                                                                                                     \
    if (!::ep::test::have_data(rel))                                                                       \
      GTEST_FAIL() << "test data missing: " << ::ep::test::data_dir() << "/" << rel                        \
                   << " — set ENTROPRUNE_TEST_DATA to the shared data folder (see README, 'Test data')"; \
  } while (0)

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/entroprune-test-XXXXXX";
    path_ = ::mkdtemp(tmpl);
  }
  ~TempDir() { std::system(("rm -rf '" + path_ + "'").c_str()); }
  std::string file(const std::string& name) const { return path_ + "/" + name; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

inline std::vector<char> read_all(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::vector<char>((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}
inline void write_all(const std::string& path, const std::vector<char>& bytes) {
  std::ofstream f(path, std::ios::binary);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

}  // namespace ep::test
