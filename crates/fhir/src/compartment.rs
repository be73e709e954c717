//! The R4 Patient compartment: which resource types belong to it and through which
//! search parameters / JSON elements. (Owned by the smart/compartment work; in progress.)
