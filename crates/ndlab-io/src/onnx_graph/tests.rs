//! Unit tests of the wire walker, the tensor decoder and the splice on hand-made messages.

use super::*;
