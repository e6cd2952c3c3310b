//! Enums whose variants are numbers on the wire, each defined once.
//!
//! Owns: [`numbered!`], which declares such an enum and its decoder from
//! one list, so a variant cannot be added without its number being
//! decoded (the decoders were hand-written beside each enum).

/// Declares a `#[repr]` enum whose every variant has a number, and
/// `from_number`, which gives the variant of a number (`None` for one no
/// variant has). Attributes and doc comments go through.
#[macro_export]
macro_rules! numbered {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident: $repr:ty {
            $( $(#[$vmeta:meta])* $variant:ident = $number:literal, )*
        }
    ) => {
        $(#[$meta])*
        #[repr($repr)]
        $vis enum $name {
            $( $(#[$vmeta])* $variant = $number, )*
        }

        impl $name {
            /// The variant numbered `n`, if there is one.
            pub const fn from_number(n: $repr) -> Option<$name> {
                match n {
                    $( $number => Some($name::$variant), )*
                    _ => None,
                }
            }
        }
    };
}
