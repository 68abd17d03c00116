//! Reading `.npy` files (NumPy format 1.0/2.0/3.0): f32, f64 and f16 (converted to f32),
//! C and Fortran order, either endianness. Absurd shapes are refused before any allocation.
