// SPDX-License-Identifier: MIT
// Tests of ddpm/io/csv.hpp: exact round trips, strict reading of corrupt files, write errors.
#include "ddpm/io/csv.hpp"

#include <doctest/doctest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include "ddpm/core/rng.hpp"
#include "support.hpp"

namespace csv_test {

namespace {

namespace fs = std::filesystem;

using ddpm::test::TempDir;

std::string slurp(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

}  // namespace

TEST_CASE("write_csv then read_csv gives back exactly the same doubles") {
  TempDir dir;
  const fs::path file = dir.path / "points.csv";
  ddpm::Batch<double> values(103, 3);
  ddpm::CounterRng(42).fill_normal(values, ddpm::stream::user, 0, 0);
  values.row(100) << 0.1, 1.0 / 3.0, -0.0;
  values.row(101) << std::numeric_limits<double>::max(), std::numeric_limits<double>::denorm_min(),
      -std::numeric_limits<double>::min();
  values.row(102) << 1e300, -123456789.125, 3.141592653589793;

  ddpm::io::write_csv(file, values, {"x", "y", "z"});
  const ddpm::io::CsvTable table = ddpm::io::read_csv(file);

  CHECK(table.columns == std::vector<std::string>{"x", "y", "z"});
  REQUIRE(table.values.rows() == values.rows());
  REQUIRE(table.values.cols() == values.cols());
  CHECK(table.values == values);  // exact, not approximate
  CHECK(table.column_index("z") == 2);
  CHECK_THROWS_WITH_AS((void)table.column_index("w"), doctest::Contains("x y z"),
                       ddpm::InvalidArgument);
  CHECK_FALSE(fs::exists(dir.path / "points.csv.tmp"));
}

TEST_CASE("float matrices round trip exactly through the double reader") {
  TempDir dir;
  const fs::path file = dir.path / "f.csv";
  ddpm::Batch<float> values(50, 2);
  ddpm::CounterRng(7).fill_normal(values, ddpm::stream::user, 0, 0);
  values(0, 0) = 0.1f;
  ddpm::io::write_csv(file, values, {"x", "y"});
  const ddpm::io::CsvTable table = ddpm::io::read_csv(file);
  CHECK(table.values == values.cast<double>());
  CHECK(table.values.cast<float>() == values);
}

TEST_CASE("write_csv writes a header line and short numbers") {
  TempDir dir;
  Eigen::MatrixXd values(2, 2);
  values << 1.5, -2, 0.25, 1e-7;

  SUBCASE("named columns") {
    ddpm::io::write_csv(dir.path / "a.csv", values, {"x", "y"});
    CHECK(slurp(dir.path / "a.csv") == "x,y\n1.5,-2\n0.25,1e-07\n");
  }
  SUBCASE("default column names") {
    ddpm::io::write_csv(dir.path / "b.csv", values);
    CHECK(slurp(dir.path / "b.csv").starts_with("x0,x1\n"));
  }
  SUBCASE("a table writes back unchanged") {
    ddpm::io::write_csv(dir.path / "c.csv", values, {"u", "v"});
    ddpm::io::write_csv(dir.path / "d.csv", ddpm::io::read_csv(dir.path / "c.csv"));
    CHECK(slurp(dir.path / "c.csv") == slurp(dir.path / "d.csv"));
  }
}

TEST_CASE("read_csv accepts spreadsheet habits") {
  TempDir dir;
  SUBCASE("CRLF, blanks around fields, a byte-order mark, '+' signs, trailing blank lines") {
    const fs::path file = dir.write("s.csv", "\xEF\xBB\xBFx , y\r\n 1.5, -2\r\n+3,4e2 \r\n\r\n\n");
    const ddpm::io::CsvTable table = ddpm::io::read_csv(file);
    CHECK(table.columns == std::vector<std::string>{"x", "y"});
    REQUIRE(table.values.rows() == 2);
    CHECK(table.values(0, 0) == 1.5);
    CHECK(table.values(0, 1) == -2.0);
    CHECK(table.values(1, 0) == 3.0);
    CHECK(table.values(1, 1) == 400.0);
  }
  SUBCASE("a header alone is an empty table") {
    const ddpm::io::CsvTable table = ddpm::io::read_csv(dir.write("h.csv", "a,b,c\n"));
    CHECK(table.values.rows() == 0);
    CHECK(table.values.cols() == 3);
  }
  SUBCASE("no newline at the end") {
    const ddpm::io::CsvTable table = ddpm::io::read_csv(dir.write("n.csv", "a\n7"));
    REQUIRE(table.values.rows() == 1);
    CHECK(table.values(0, 0) == 7.0);
  }
}

TEST_CASE("read_csv rejects corrupt files with the file, line and reason") {
  TempDir dir;
  using ddpm::FormatError;
  using doctest::Contains;
  const auto read = [&](const std::string& content) {
    return ddpm::io::read_csv(dir.write("bad.csv", content));
  };

  SUBCASE("the message names the file") {
    CHECK_THROWS_WITH_AS(read("x,y\n1,2\n3\n"), Contains("bad.csv"), FormatError);
  }
  SUBCASE("too few fields") {
    CHECK_THROWS_WITH_AS(read("x,y\n1,2\n3\n"),
                         Contains("line 3: expected 2 fields as in the header, found 1"),
                         FormatError);
  }
  SUBCASE("too many fields") {
    CHECK_THROWS_WITH_AS(read("x,y\n1,2,3\n"), Contains("line 2: expected 2 fields"), FormatError);
  }
  SUBCASE("non-numeric field") {
    CHECK_THROWS_WITH_AS(read("x,y\n1,2\n3,abc\n"),
                         Contains("line 3: field 2 (y) 'abc' is not a number"), FormatError);
  }
  SUBCASE("number followed by junk") {
    CHECK_THROWS_WITH_AS(read("x\n1.5x\n"), Contains("line 2: field 1 (x) '1.5x' is not a number"),
                         FormatError);
  }
  SUBCASE("empty field") {
    CHECK_THROWS_WITH_AS(read("x,y\n1,\n"), Contains("line 2: field 2 (y) is empty"), FormatError);
  }
  SUBCASE("NaN text") {
    CHECK_THROWS_WITH_AS(read("x,y\n1,2\n4,5\nnan,1\n"),
                         Contains("line 4: field 1 (x) 'nan' is not finite"), FormatError);
  }
  SUBCASE("infinity text") {
    CHECK_THROWS_WITH_AS(read("x,y\n-inf,1\n"),
                         Contains("line 2: field 1 (x) '-inf' is not finite"), FormatError);
  }
  SUBCASE("overflow") {
    CHECK_THROWS_WITH_AS(read("x\n1e999\n"),
                         Contains("line 2: field 1 (x) '1e999' is out of double range"),
                         FormatError);
  }
  SUBCASE("empty file") {
    CHECK_THROWS_WITH_AS(read(""), Contains("the file is empty"), FormatError);
  }
  SUBCASE("missing header") {
    CHECK_THROWS_WITH_AS(read("1,2\n3,4\n"), Contains("line 1: missing header"), FormatError);
  }
  SUBCASE("blank header line") {
    CHECK_THROWS_WITH_AS(read("\n1,2\n"), Contains("line 1: missing header"), FormatError);
  }
  SUBCASE("empty column name") {
    CHECK_THROWS_WITH_AS(read("x,,z\n1,2,3\n"), Contains("line 1: header column 2 '' empty"),
                         FormatError);
  }
  SUBCASE("numeric column name") {
    CHECK_THROWS_WITH_AS(read("x,2\n1,2\n"), Contains("line 1: header column 2 '2' is a number"),
                         FormatError);
  }
  SUBCASE("duplicate column name") {
    CHECK_THROWS_WITH_AS(read("x,x\n1,2\n"), Contains("line 1: duplicate column name 'x'"),
                         FormatError);
  }
  SUBCASE("quoted field") {
    CHECK_THROWS_WITH_AS(read("x,y\n\"1\",2\n"),
                         Contains("line 2: field 1 (x) '\"1\"' is not a number"), FormatError);
  }
  SUBCASE("blank line before more data") {
    CHECK_THROWS_WITH_AS(read("x\n1\n\n2\n"), Contains("line 3: blank line before more data"),
                         FormatError);
  }
  SUBCASE("absurdly long line") {
    const std::string line(ddpm::io::kMaxCsvLineLength + 10, '1');
    CHECK_THROWS_WITH_AS(read("x\n1\n" + line + "\n"), Contains("line 3: line longer than"),
                         FormatError);
  }
  SUBCASE("binary garbage") {
    CHECK_THROWS_WITH_AS(read(std::string("x\n\x01\x00\xff", 5)),
                         Contains("line 2: field 1 (x) '\?\?\?' is not a number"), FormatError);
  }
  SUBCASE("missing file") {
    CHECK_THROWS_WITH_AS(ddpm::io::read_csv(dir.path / "nope.csv"),
                         Contains("nope.csv': cannot be opened"), FormatError);
  }
  SUBCASE("a directory") {
    CHECK_THROWS_WITH_AS(ddpm::io::read_csv(dir.path), Contains("it is a directory"), FormatError);
  }
}

TEST_CASE("write_csv validates its arguments and reports unwritable files") {
  TempDir dir;
  Eigen::MatrixXd values = Eigen::MatrixXd::Zero(3, 2);

  SUBCASE("column count mismatch") {
    CHECK_THROWS_WITH_AS(ddpm::io::write_csv(dir.path / "a.csv", values, {"x"}),
                         doctest::Contains("columns.size() = 1"), ddpm::InvalidArgument);
  }
  SUBCASE("column names that would not read back") {
    CHECK_THROWS_AS(ddpm::io::write_csv(dir.path / "a.csv", values, {"x", "a,b"}),
                    ddpm::InvalidArgument);
    CHECK_THROWS_AS(ddpm::io::write_csv(dir.path / "a.csv", values, {"x", "1"}),
                    ddpm::InvalidArgument);
    CHECK_THROWS_AS(ddpm::io::write_csv(dir.path / "a.csv", values, {"x", ""}),
                    ddpm::InvalidArgument);
  }
  SUBCASE("non-finite values: nothing is written") {
    values(2, 1) = std::numeric_limits<double>::quiet_NaN();
    CHECK_THROWS_WITH_AS(ddpm::io::write_csv(dir.path / "a.csv", values, {"x", "y"}),
                         doctest::Contains("values(2, 1)"), ddpm::InvalidArgument);
    CHECK_FALSE(fs::exists(dir.path / "a.csv"));
  }
  SUBCASE("a missing directory") {
    CHECK_THROWS_WITH_AS(ddpm::io::write_csv(dir.path / "no" / "such" / "a.csv", values),
                         doctest::Contains("a.csv"), std::runtime_error);
  }
  SUBCASE("an existing file is replaced whole") {
    const fs::path file = dir.write("a.csv", std::string(1000, 'z'));
    ddpm::io::write_csv(file, values, {"x", "y"});
    CHECK(slurp(file) == "x,y\n0,0\n0,0\n0,0\n");
  }
}

}  // namespace csv_test
