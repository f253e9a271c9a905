//! f64 elementary functions through `libm`, so results are identical with and without `std`.

#[inline]
pub(crate) fn pow(x: f64, y: f64) -> f64 {
    libm::pow(x, y)
}
#[inline]
pub(crate) fn ln(x: f64) -> f64 {
    libm::log(x)
}
#[inline]
pub(crate) fn sqrt(x: f64) -> f64 {
    libm::sqrt(x)
}
#[inline]
pub(crate) fn floor(x: f64) -> f64 {
    libm::floor(x)
}
#[inline]
pub(crate) fn ceil(x: f64) -> f64 {
    libm::ceil(x)
}
#[inline]
pub(crate) fn sin_cos(x: f64) -> (f64, f64) {
    libm::sincos(x)
}
#[inline]
pub(crate) fn exp(x: f64) -> f64 {
    libm::exp(x)
}
