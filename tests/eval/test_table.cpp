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

}  // namespace thinkingvit::testing
