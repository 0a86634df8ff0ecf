#include "thinkingvit/eval/table.h"

#include <filesystem>

#include <nlohmann/json.hpp>

#include <iomanip>
#include <sstream>

#include "thinkingvit/util/error.h"
#include "thinkingvit/util/fs.h"

namespace thinkingvit::eval {

TableFormat parse_table_format(const std::string& text, const std::string& what) {
  if (text == "md" || text == "markdown") return TableFormat::kMarkdown;
  if (text == "csv") return TableFormat::kCsv;
  if (text == "json") return TableFormat::kJson;
  fail(what, ": expected md, csv or json, found '", text, "'");
}

TableFormat table_format_for_path(const std::string& path, const std::string& what) {
  const auto ext = std::filesystem::path(path).extension().string();
  if (ext == ".md") return TableFormat::kMarkdown;
  if (ext == ".csv") return TableFormat::kCsv;
  if (ext == ".json") return TableFormat::kJson;
  fail(what, " '", path, "': expected a .md, .csv or .json file name");
}

void Table::add_row(std::vector<Cell> row) {
  TVIT_CHECK(row.size() == columns_.size(), "table row has ", row.size(), " cells, expected ",
             columns_.size());
  rows_.push_back(std::move(row));
}

std::string Table::text(const Cell& cell) const {
  if (const auto* s = std::get_if<std::string>(&cell)) return *s;
  if (const auto* i = std::get_if<int64_t>(&cell)) return std::to_string(*i);
  std::ostringstream out;
  out << std::fixed << std::setprecision(precision_) << std::get<double>(cell);
  return out.str();
}

namespace {

std::string csv_quote(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

}  // namespace

void Table::write(std::ostream& out, TableFormat format) const {
  switch (format) {
    case TableFormat::kMarkdown: {
      out << "|";
      for (const auto& c : columns_) out << " " << c << " |";
      out << "\n|";
      for (size_t i = 0; i < columns_.size(); ++i) out << "---|";
      out << "\n";
      for (const auto& row : rows_) {
        out << "|";
        for (const auto& cell : row) out << " " << text(cell) << " |";
        out << "\n";
      }
      break;
    }
    case TableFormat::kCsv: {
      for (size_t i = 0; i < columns_.size(); ++i) out << (i ? "," : "") << csv_quote(columns_[i]);
      out << "\n";
      for (const auto& row : rows_) {
        for (size_t i = 0; i < row.size(); ++i) out << (i ? "," : "") << csv_quote(text(row[i]));
        out << "\n";
      }
      break;
    }
    case TableFormat::kJson: {
      auto array = nlohmann::json::array();
      for (const auto& row : rows_) {
        nlohmann::json obj = nlohmann::json::object();
        for (size_t i = 0; i < row.size(); ++i) {
          std::visit([&](const auto& v) { obj[columns_[i]] = v; }, row[i]);
        }
        array.push_back(obj);
      }
      out << array.dump(2) << "\n";
      break;
    }
  }
}

void Table::save(const std::string& path, TableFormat format) const {
  util::write_file_atomic(path, [&](std::ostream& out) { write(out, format); });
}

}  // namespace thinkingvit::eval
