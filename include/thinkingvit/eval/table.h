#pragma once
// One table, three printers (markdown, CSV, JSON): every report of the project goes through it.

#include <ostream>
#include <string>
#include <variant>
#include <vector>

namespace thinkingvit::eval {

enum class TableFormat { kMarkdown, kCsv, kJson };
TableFormat parse_table_format(const std::string& text, const std::string& what);
// The format a file name asks for: .md, .csv or .json; anything else is an Error naming `what`.
TableFormat table_format_for_path(const std::string& path, const std::string& what);

class Table {
 public:
  using Cell = std::variant<std::string, int64_t, double>;

  explicit Table(std::vector<std::string> columns) : columns_(std::move(columns)) {}
  // Throws if the row does not have one cell per column.
  void add_row(std::vector<Cell> row);
  // Digits after the point when doubles are printed as text (markdown/CSV); JSON keeps all.
  void set_precision(int digits) { precision_ = digits; }

  const std::vector<std::string>& columns() const { return columns_; }
  const std::vector<std::vector<Cell>>& rows() const { return rows_; }

  void write(std::ostream& out, TableFormat format) const;
  // Writes atomically to path.
  void save(const std::string& path, TableFormat format) const;

 private:
  std::string text(const Cell& cell) const;
  std::vector<std::string> columns_;
  std::vector<std::vector<Cell>> rows_;
  int precision_ = 4;
};

}  // namespace thinkingvit::eval
