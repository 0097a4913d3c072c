// SPDX-License-Identifier: MIT
// Tests of a user's 2-D points: CSV/.npy loading with named problems, standardization round trip,
// and reproducible row draws.
#include "ddpm/data/points.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <vector>

#include "support.hpp"

namespace points_test {

TEST_CASE("load_points reads x and y by name and refuses bad files with a message") {
  ddpm::test::TempDir dir;
  const ddpm::Batch<double> points =
      ddpm::data::load_points(dir.write("p.csv", "label,y,x\n0,2,1\n1,4,3\n2,6,5\n3,8,7\n"));
  REQUIRE(points.rows() == 4);
  CHECK(points(1, 0) == 3.0);
  CHECK(points(1, 1) == 4.0);
  CHECK_THROWS_WITH_AS(ddpm::data::load_points(dir.write("few.csv", "x,y\n1,2\n")),
                       doctest::Contains("has 1 points; between 4 and 2^31 are needed"),
                       ddpm::FormatError);
  CHECK_THROWS_WITH_AS(ddpm::data::load_points(dir.write("abc.csv", "a,b,c\n1,2,3\n")),
                       doctest::Contains("expected columns named x and y"), ddpm::FormatError);
}

TEST_CASE("Standardization maps to the model's units and back") {
  ddpm::Batch<double> points(4, 2);
  points << 98, -53, 99, -47, 101, -53, 102, -47;
  const auto s = ddpm::data::Standardization::fit(points, "memory");
  CHECK(s.mean == std::vector<double>{100.0, -50.0});
  CHECK(s.scale[1] == 3.0);
  const ddpm::Batch<double> model = s.to_model<double>(points);
  CHECK(model(0, 1) == -1.0);
  CHECK((s.to_data(model) - points).cwiseAbs().maxCoeff() < 1e-12);
  ddpm::Batch<double> constant = points;
  constant.col(0).setConstant(1.0);
  CHECK_THROWS_WITH_AS(ddpm::data::Standardization::fit(constant, "c.csv"),
                       doctest::Contains("x has the same value in every row"), ddpm::FormatError);
}

TEST_CASE("shuffled_rows is a permutation fixed by the seed, ResampledRows draws by (step, row)") {
  const std::vector<ddpm::Index> a = ddpm::data::shuffled_rows(50, 7);
  std::vector<ddpm::Index> sorted = a;
  std::sort(sorted.begin(), sorted.end());
  for (ddpm::Index i = 0; i < 50; ++i) CHECK(sorted[static_cast<std::size_t>(i)] == i);
  CHECK(a == ddpm::data::shuffled_rows(50, 7));
  CHECK(a != ddpm::data::shuffled_rows(50, 8));
  ddpm::Batch<float> rows(5, 2);
  rows << 0, 0, 1, 1, 2, 2, 3, 3, 4, 4;
  const ddpm::data::ResampledRows<float> source{&rows, 3};
  ddpm::Batch<float> first, again;
  source(12, 8, first);
  source(12, 8, again);
  CHECK(first == again);
  CHECK(first.col(0) == first.col(1));
}

}  // namespace points_test
