//! Search parameters, parsed once and kept distinguishable: repeats, comma lists,
//! modifiers (`:exact`, `:Patient`) and chains (`subject.name`).
//!
//! CONTRACT: the types and method signatures are fixed; bodies are owned by the fhir crate.

/// One `name[:modifier][.chain]=value[,value…]` pair, in request order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchParam {
    /// Base parameter name, decoded (`subject` in `subject:Patient.name`).
    pub name: String,
    /// Modifier without the colon (`Patient`, `exact`, `missing`, ...).
    pub modifier: Option<String>,
    /// Chain after the first `.` (`name` in `subject.name`), may itself contain dots.
    pub chain: Option<String>,
    /// Decoded values, comma list split (FHIR `\,` escapes honoured).
    pub values: Vec<String>,
    /// Name exactly as received (still encoded), for faithful re-serialisation.
    pub raw_name: String,
    /// Value exactly as received (still encoded).
    pub raw_value: String,
}

/// All parameters of a request, in order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SearchParams {
    pub params: Vec<SearchParam>,
}

impl SearchParams {
    /// Parse a query string (without the leading `?`) or form body.
    pub fn parse(query: &str) -> Result<Self, crate::ClassifyError> {
        let _ = query;
        Ok(SearchParams::default())
    }

    /// Parameters with this base name (any modifier/chain).
    pub fn named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a SearchParam> + 'a {
        self.params.iter().filter(move |p| p.name == name)
    }

    /// Append `name=value` (value given decoded; it is encoded on serialisation).
    pub fn push(&mut self, name: &str, value: &str) {
        let _ = (name, value);
    }

    /// Re-serialise in order; unchanged parameters keep their original encoding.
    pub fn to_query_string(&self) -> String {
        String::new()
    }

    pub fn is_empty(&self) -> bool {
        self.params.is_empty()
    }
}
