//! Shapes whose dims are fixed numbers, symbols, or small affine expressions of
//! symbols (`N`, `2*N+1`, `(S-3)/2+1`).
//!
//! A dim that cannot be expressed that way becomes a fresh symbol, so shape
//! inference never fails merely because an expression got too complicated.
//! Static-shape pinning substitutes values for symbols ([`Dim::substitute`]).

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use super::graph::SymId;

/// `axis` in `-rank..rank` as an index into the dims (negative counts from the end).
pub fn normalize_axis(axis: i64, rank: usize) -> Result<usize, String> {
    let r = rank as i64;
    if axis < -r || axis >= r {
        return Err(format!("axis {axis} is out of range for rank {rank}"));
    }
    Ok(if axis < 0 { axis + r } else { axis } as usize)
}

/// Names of the graph's symbolic dims, indexed by [`SymId`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Symbols {
    names: Vec<String>,
    index: HashMap<String, SymId>,
}

impl Symbols {
    /// The symbol with this name, created if new.
    pub fn intern(&mut self, name: &str) -> SymId {
        if let Some(&id) = self.index.get(name) {
            return id;
        }
        let id = SymId(self.names.len() as u32);
        self.names.push(name.to_string());
        self.index.insert(name.to_string(), id);
        id
    }

    /// A new symbol with a name not used before, starting from `hint`.
    pub fn fresh(&mut self, hint: &str) -> SymId {
        let mut i = self.names.len();
        loop {
            let name = format!("{hint}{i}");
            if !self.index.contains_key(&name) {
                return self.intern(&name);
            }
            i += 1;
        }
    }

    pub fn get(&self, name: &str) -> Option<SymId> {
        self.index.get(name).copied()
    }

    pub fn name(&self, id: SymId) -> &str {
        self.names.get(id.0 as usize).map_or("?", String::as_str)
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (SymId, &str)> {
        self.names
            .iter()
            .enumerate()
            .map(|(i, n)| (SymId(i as u32), n.as_str()))
    }
}

/// `floor((sum(coeff * sym) + offset) / divisor)`, with terms sorted by symbol and
/// no zero coefficients. `divisor >= 1`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SymExpr {
    terms: Vec<(SymId, i64)>,
    offset: i64,
    divisor: i64,
}

/// One dimension of a shape.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Dim {
    Fixed(u64),
    Sym(SymExpr),
}

impl Dim {
    pub fn sym(id: SymId) -> Dim {
        Dim::Sym(SymExpr {
            terms: vec![(id, 1)],
            offset: 0,
            divisor: 1,
        })
    }

    pub fn fixed(&self) -> Option<u64> {
        match self {
            Dim::Fixed(n) => Some(*n),
            Dim::Sym(_) => None,
        }
    }

    /// The symbol if this dim is exactly one symbol.
    pub fn as_symbol(&self) -> Option<SymId> {
        match self {
            Dim::Sym(e) if e.offset == 0 && e.divisor == 1 && e.terms == [(e.terms[0].0, 1)] => {
                Some(e.terms[0].0)
            }
            _ => None,
        }
    }

    pub fn symbols(&self) -> Vec<SymId> {
        match self {
            Dim::Fixed(_) => vec![],
            Dim::Sym(e) => e.terms.iter().map(|t| t.0).collect(),
        }
    }

    fn from_expr(e: SymExpr) -> Dim {
        if e.terms.is_empty() {
            let v = e.offset.div_euclid(e.divisor);
            return Dim::Fixed(v.max(0) as u64);
        }
        Dim::Sym(e)
    }

    fn as_expr(&self) -> Option<SymExpr> {
        match self {
            Dim::Fixed(n) => Some(SymExpr {
                terms: vec![],
                offset: i64::try_from(*n).ok()?,
                divisor: 1,
            }),
            Dim::Sym(e) => Some(e.clone()),
        }
    }

    /// `self + other`, or `None` when not expressible (a divided expression plus
    /// a symbolic one).
    pub fn add(&self, other: &Dim) -> Option<Dim> {
        let (a, b) = (self.as_expr()?, other.as_expr()?);
        if a.divisor == 1 && b.divisor == 1 {
            let mut terms: BTreeMap<SymId, i64> = BTreeMap::new();
            for (s, c) in a.terms.iter().chain(&b.terms) {
                *terms.entry(*s).or_default() += c;
            }
            return Some(Dim::from_expr(SymExpr {
                terms: terms.into_iter().filter(|t| t.1 != 0).collect(),
                offset: a.offset.checked_add(b.offset)?,
                divisor: 1,
            }));
        }
        // floor(x / d) + k == floor((x + k*d) / d) for integer k.
        let (divided, constant) = match (a.terms.is_empty(), b.terms.is_empty()) {
            (_, true) if b.divisor == 1 => (a, b.offset),
            (true, _) if a.divisor == 1 => (b, a.offset),
            _ => return None,
        };
        Some(Dim::from_expr(SymExpr {
            offset: divided
                .offset
                .checked_add(constant.checked_mul(divided.divisor)?)?,
            ..divided
        }))
    }

    pub fn add_const(&self, k: i64) -> Option<Dim> {
        let k = if k >= 0 {
            Dim::Fixed(k as u64)
        } else {
            return self.add(&Dim::Sym(SymExpr {
                terms: vec![],
                offset: k,
                divisor: 1,
            }));
        };
        self.add(&k)
    }

    pub fn mul_const(&self, k: i64) -> Option<Dim> {
        let e = self.as_expr()?;
        if e.divisor != 1 && k != 0 {
            return None;
        }
        Some(Dim::from_expr(SymExpr {
            terms: e
                .terms
                .iter()
                .map(|(s, c)| Some((*s, c.checked_mul(k)?)))
                .collect::<Option<Vec<_>>>()?
                .into_iter()
                .filter(|t| t.1 != 0)
                .collect(),
            offset: e.offset.checked_mul(k)?,
            divisor: 1,
        }))
    }

    /// `floor(self / k)` for `k >= 1`.
    pub fn div_floor(&self, k: i64) -> Option<Dim> {
        if k < 1 {
            return None;
        }
        let e = self.as_expr()?;
        Some(Dim::from_expr(SymExpr {
            divisor: e.divisor.checked_mul(k)?,
            ..e
        }))
    }

    /// `self * other` when at least one side is fixed.
    pub fn mul(&self, other: &Dim) -> Option<Dim> {
        match (self, other) {
            (Dim::Fixed(a), _) => other.mul_const(i64::try_from(*a).ok()?),
            (_, Dim::Fixed(b)) => self.mul_const(i64::try_from(*b).ok()?),
            _ => None,
        }
    }

    /// The value of this dim with the given symbols substituted.
    pub fn substitute(&self, values: &BTreeMap<SymId, u64>) -> Dim {
        let Dim::Sym(e) = self else {
            return self.clone();
        };
        let mut rest = Vec::new();
        let mut offset = Some(e.offset);
        for (s, c) in &e.terms {
            match values.get(s) {
                Some(v) => {
                    offset = offset.and_then(|o| o.checked_add(c.checked_mul(*v as i64)?));
                }
                None => rest.push((*s, *c)),
            }
        }
        match offset {
            Some(offset) => Dim::from_expr(SymExpr {
                terms: rest,
                offset,
                divisor: e.divisor,
            }),
            None => self.clone(),
        }
    }

    pub fn display<'a>(&'a self, symbols: &'a Symbols) -> DimDisplay<'a> {
        DimDisplay { dim: self, symbols }
    }

    /// Parses the text form written by [`Dim::display`], interning symbol names.
    pub fn parse(text: &str, symbols: &mut Symbols) -> Option<Dim> {
        let text = text.trim();
        if let Ok(n) = text.parse::<u64>() {
            return Some(Dim::Fixed(n));
        }
        let (body, divisor) = match text.rsplit_once(")/") {
            Some((b, d)) => (b.strip_prefix('(')?, d.parse::<i64>().ok()?),
            None => (text, 1),
        };
        let mut terms: BTreeMap<SymId, i64> = BTreeMap::new();
        let mut offset = 0i64;
        let normalized = body.replace('-', "+-");
        for part in normalized
            .split('+')
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            if let Ok(k) = part.parse::<i64>() {
                offset = offset.checked_add(k)?;
                continue;
            }
            let (coeff, name) = match part.split_once('*') {
                Some((c, n)) => (c.trim().parse::<i64>().ok()?, n.trim()),
                None => match part.strip_prefix('-') {
                    Some(n) => (-1, n.trim()),
                    None => (1, part),
                },
            };
            if name.is_empty() || !name.chars().all(|c| c.is_alphanumeric() || c == '_') {
                return None;
            }
            *terms.entry(symbols.intern(name)).or_default() += coeff;
        }
        let e = SymExpr {
            terms: terms.into_iter().filter(|t| t.1 != 0).collect(),
            offset,
            divisor,
        };
        (divisor >= 1).then(|| Dim::from_expr(e))
    }
}

pub struct DimDisplay<'a> {
    dim: &'a Dim,
    symbols: &'a Symbols,
}

impl fmt::Display for DimDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = match self.dim {
            Dim::Fixed(n) => return write!(f, "{n}"),
            Dim::Sym(e) => e,
        };
        let mut body = String::new();
        for (i, (s, c)) in e.terms.iter().enumerate() {
            let name = self.symbols.name(*s);
            match (*c, i) {
                (1, 0) => body.push_str(name),
                (1, _) => body.push_str(&format!("+{name}")),
                (-1, _) => body.push_str(&format!("-{name}")),
                (c, 0) => body.push_str(&format!("{c}*{name}")),
                (c, _) if c > 0 => body.push_str(&format!("+{c}*{name}")),
                (c, _) => body.push_str(&format!("{c}*{name}")),
            }
        }
        match e.offset {
            0 => {}
            o if o > 0 => body.push_str(&format!("+{o}")),
            o => body.push_str(&format!("{o}")),
        }
        if e.divisor == 1 {
            f.write_str(&body)
        } else {
            write!(f, "({body})/{}", e.divisor)
        }
    }
}

/// The shape of a value: dims when the rank is known.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Shape {
    Ranked(Vec<Dim>),
    Unranked,
}

impl Shape {
    pub fn fixed(dims: &[usize]) -> Shape {
        Shape::Ranked(dims.iter().map(|&d| Dim::Fixed(d as u64)).collect())
    }

    pub fn scalar() -> Shape {
        Shape::Ranked(vec![])
    }

    pub fn dims(&self) -> Option<&[Dim]> {
        match self {
            Shape::Ranked(d) => Some(d),
            Shape::Unranked => None,
        }
    }

    pub fn rank(&self) -> Option<usize> {
        self.dims().map(<[Dim]>::len)
    }

    /// All dims as numbers, when every dim is fixed.
    pub fn as_fixed(&self) -> Option<Vec<usize>> {
        self.dims()?
            .iter()
            .map(|d| d.fixed().and_then(|n| usize::try_from(n).ok()))
            .collect()
    }

    pub fn is_static(&self) -> bool {
        self.as_fixed().is_some()
    }

    /// Element count when static; `None` when symbolic or on overflow.
    pub fn element_count(&self) -> Option<u64> {
        self.dims()?
            .iter()
            .try_fold(1u64, |acc, d| acc.checked_mul(d.fixed()?))
    }

    pub fn symbols(&self) -> Vec<SymId> {
        let mut out: Vec<SymId> = self
            .dims()
            .unwrap_or(&[])
            .iter()
            .flat_map(Dim::symbols)
            .collect();
        out.sort();
        out.dedup();
        out
    }

    pub fn substitute(&self, values: &BTreeMap<SymId, u64>) -> Shape {
        match self {
            Shape::Ranked(d) => Shape::Ranked(d.iter().map(|d| d.substitute(values)).collect()),
            Shape::Unranked => Shape::Unranked,
        }
    }

    pub fn display<'a>(&'a self, symbols: &'a Symbols) -> ShapeDisplay<'a> {
        ShapeDisplay {
            shape: self,
            symbols,
        }
    }

    /// Parses `[1,N,(S-3)/2+1]` or `[?]` (unranked).
    pub fn parse(text: &str, symbols: &mut Symbols) -> Option<Shape> {
        let inner = text.trim().strip_prefix('[')?.strip_suffix(']')?.trim();
        if inner == "?" {
            return Some(Shape::Unranked);
        }
        if inner.is_empty() {
            return Some(Shape::scalar());
        }
        let mut dims = Vec::new();
        let mut depth = 0;
        let mut start = 0;
        for (i, c) in inner.char_indices() {
            match c {
                '(' => depth += 1,
                ')' => depth -= 1,
                ',' if depth == 0 => {
                    dims.push(Dim::parse(&inner[start..i], symbols)?);
                    start = i + 1;
                }
                _ => {}
            }
        }
        dims.push(Dim::parse(&inner[start..], symbols)?);
        Some(Shape::Ranked(dims))
    }
}

pub struct ShapeDisplay<'a> {
    shape: &'a Shape,
    symbols: &'a Symbols,
}

impl fmt::Display for ShapeDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(dims) = self.shape.dims() else {
            return f.write_str("[?]");
        };
        f.write_str("[")?;
        for (i, d) in dims.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{}", d.display(self.symbols))?;
        }
        f.write_str("]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn syms() -> (Symbols, Dim, Dim) {
        let mut s = Symbols::default();
        let n = Dim::sym(s.intern("N"));
        let m = Dim::sym(s.intern("M"));
        (s, n, m)
    }

    #[test]
    fn affine_arithmetic_simplifies() {
        let (s, n, m) = syms();
        let e = n.add(&m).unwrap().add(&n).unwrap().add_const(-3).unwrap();
        assert_eq!(e.display(&s).to_string(), "2*N+M-3");
        let back = n
            .mul_const(2)
            .unwrap()
            .add(&n.mul_const(-2).unwrap())
            .unwrap();
        assert_eq!(back, Dim::Fixed(0));
    }

    #[test]
    fn conv_output_dim_is_expressible() {
        let (s, n, _) = syms();
        // (N + 2*1 - 3) / 2 + 1
        let out = n
            .add_const(-1)
            .unwrap()
            .div_floor(2)
            .unwrap()
            .add_const(1)
            .unwrap();
        assert_eq!(out.display(&s).to_string(), "(N+1)/2");
        let mut vals = BTreeMap::new();
        vals.insert(s.get("N").unwrap(), 224);
        assert_eq!(out.substitute(&vals), Dim::Fixed(112));
    }

    #[test]
    fn inexpressible_products_are_refused() {
        let (_, n, m) = syms();
        assert!(n.mul(&m).is_none());
        assert!(n.div_floor(2).unwrap().mul_const(2).is_none());
    }

    #[test]
    fn text_form_round_trips() {
        let (mut s, n, m) = syms();
        let shapes = [
            Shape::Ranked(vec![Dim::Fixed(1), n.clone(), m.mul_const(3).unwrap()]),
            Shape::Ranked(vec![n.add_const(-3).unwrap().div_floor(2).unwrap()]),
            Shape::Ranked(vec![n.mul_const(-1).unwrap().add(&m).unwrap()]),
            Shape::scalar(),
            Shape::Unranked,
        ];
        for shape in shapes {
            let text = shape.display(&s).to_string();
            let parsed = Shape::parse(&text, &mut s).unwrap();
            assert_eq!(parsed, shape, "{text}");
        }
    }
}
