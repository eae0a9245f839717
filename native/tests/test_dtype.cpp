#include <gtest/gtest.h>

#include <cmath>

#include "core/format/dtype.h"

using namespace ep;

TEST(DType, HalfConversionsKnownValues) {
  EXPECT_EQ(f16_to_f32(0x3c00), 1.0f);
  EXPECT_EQ(f16_to_f32(0xc000), -2.0f);
  EXPECT_EQ(f16_to_f32(0x7bff), 65504.0f);
  EXPECT_EQ(f16_to_f32(0x0001), std::ldexp(1.0f, -24));  // smallest subnormal
  EXPECT_TRUE(std::isinf(f16_to_f32(0x7c00)));
  EXPECT_TRUE(std::isnan(f16_to_f32(0x7e00)));
  EXPECT_EQ(bf16_to_f32(0x3f80), 1.0f);
  EXPECT_EQ(bf16_to_f32(0xc040), -3.0f);
}

TEST(DType, RoundTripsEveryHalfValue) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    float f = f16_to_f32(static_cast<uint16_t>(h));
    if (std::isnan(f)) continue;
    EXPECT_EQ(f32_to_f16(f), h) << std::hex << h;
    float b = bf16_to_f32(static_cast<uint16_t>(h));
    if (!std::isnan(b)) EXPECT_EQ(f32_to_bf16(b), h) << std::hex << h;
  }
}

TEST(DType, BF16RoundsToNearestEven) {
  EXPECT_EQ(f32_to_bf16(1.00390625f), 0x3f80);  // exactly halfway, even stays
  EXPECT_EQ(f32_to_bf16(1.01171875f), 0x3f82);  // halfway, rounds to even above
}
