#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <sstream>

#include "../test_util.h"
#include "thinkingvit/eval/table.h"

namespace thinkingvit::testing {

namespace {

eval::Table sample() {
  eval::Table table({"name", "count", "value"});
  table.add_row({std::string("a,b"), int64_t{3}, 0.125});
  table.add_row({std::string("plain"), int64_t{-1}, 2.5});
  table.set_precision(3);
  return table;
}

std::string render(const eval::Table& t, eval::TableFormat f) {
  std::ostringstream out;
  t.write(out, f);
  return out.str();
}

}  // namespace

TEST(Table, PrintsMarkdownAndCsv) {
  EXPECT_EQ(
      render(sample(), eval::TableFormat::kMarkdown),
      "| name | count | value |\n|---|---|---|\n| a,b | 3 | 0.125 |\n| plain | -1 | 2.500 |\n");
  EXPECT_EQ(render(sample(), eval::TableFormat::kCsv),
            "name,count,value\n\"a,b\",3,0.125\nplain,-1,2.500\n");
}

TEST(Table, JsonParsesBackToTheSameNumbers) {
  auto json = nlohmann::json::parse(render(sample(), eval::TableFormat::kJson));
  ASSERT_EQ(json.size(), 2u);
  EXPECT_EQ(json[0]["name"], "a,b");
  EXPECT_EQ(json[0]["count"].get<int64_t>(), 3);
  EXPECT_DOUBLE_EQ(json[1]["value"].get<double>(), 2.5);
}

TEST(Table, RejectsRaggedRowsAndUnknownFormats) {
  eval::Table table({"a", "b"});
  expect_error([&] { table.add_row({int64_t{1}}); }, {"1 cells", "expected 2"});
  expect_error([] { eval::parse_table_format("xml", "--format"); }, {"--format", "'xml'"});
}

TEST(Table, FormatFollowsTheFileExtension) {
  EXPECT_EQ(eval::table_format_for_path("out/x.md", "--output"), eval::TableFormat::kMarkdown);
  EXPECT_EQ(eval::table_format_for_path("x.csv", "--output"), eval::TableFormat::kCsv);
  EXPECT_EQ(eval::table_format_for_path("a.b/x.json", "--output"), eval::TableFormat::kJson);
  for (const char* bad : {"x.txt", "x", "x.md.tmp", "csv"}) {
    try {
      eval::table_format_for_path(bad, "--output");
      ADD_FAILURE() << bad << " was accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(std::string("--output '") + bad + "'"),
                std::string::npos)
          << e.what();
    }
  }
}

}  // namespace thinkingvit::testing
