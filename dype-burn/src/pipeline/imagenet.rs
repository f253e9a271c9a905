//! ImageNet-1k class labels for class-conditional models (FiTv2): names by id and ids by name.

use thiserror::Error;

const IMAGENET: &str = include_str!("imagenet_classes.txt");

/// Number of ImageNet-1k classes.
pub const IMAGENET_CLASSES: usize = 1000;

/// A class query that names no single ImageNet class.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ImageNetError {
    /// A numeric id outside `0..1000`.
    #[error("class id {id} is out of range (0..{IMAGENET_CLASSES})")]
    OutOfRange {
        /// The id given.
        id: usize,
    },
    /// No class name contains the query.
    #[error("no ImageNet class matches `{query}`")]
    NoMatch {
        /// The query given.
        query: String,
    },
    /// The query is a substring of several class names and equal to none.
    #[error("`{query}` matches {count} classes, e.g. {examples}")]
    Ambiguous {
        /// The query given.
        query: String,
        /// How many classes contain it.
        count: usize,
        /// The first few matches, `id (name)`.
        examples: String,
    },
}

/// The ImageNet-1k class names (WordNet lemmas, comma-separated synonyms), in class-id order.
pub fn imagenet_classes() -> impl Iterator<Item = (usize, &'static str)> {
    IMAGENET
        .lines()
        .enumerate()
        .map(|(i, l)| (i, l.split_once('\t').map(|(_, n)| n).unwrap_or(l)))
}

/// Resolves a class given as an id (`"207"`) or a name (`"golden retriever"`, case-insensitive;
/// any synonym; a unique substring also matches).
pub fn imagenet_class(query: &str) -> Result<usize, ImageNetError> {
    let q = query.trim().to_lowercase();
    if let Ok(id) = q.parse::<usize>() {
        return if id < IMAGENET_CLASSES {
            Ok(id)
        } else {
            Err(ImageNetError::OutOfRange { id })
        };
    }
    let exact: Vec<usize> = imagenet_classes()
        .filter(|(_, n)| n.split(',').any(|s| s.trim().to_lowercase() == q))
        .map(|(i, _)| i)
        .collect();
    if let [one] = exact[..] {
        return Ok(one);
    }
    let partial: Vec<(usize, &str)> = imagenet_classes()
        .filter(|(_, n)| n.to_lowercase().contains(&q))
        .collect();
    match partial[..] {
        [(one, _)] => Ok(one),
        [] => Err(ImageNetError::NoMatch {
            query: query.to_string(),
        }),
        _ => Err(ImageNetError::Ambiguous {
            query: query.to_string(),
            count: partial.len(),
            examples: partial
                .iter()
                .take(5)
                .map(|(i, n)| format!("{i} ({n})"))
                .collect::<Vec<_>>()
                .join("; "),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_names_and_errors() {
        assert_eq!(imagenet_classes().count(), IMAGENET_CLASSES);
        assert_eq!(imagenet_class("207"), Ok(207));
        assert_eq!(imagenet_class("Golden Retriever"), Ok(207));
        assert_eq!(
            imagenet_class("1000"),
            Err(ImageNetError::OutOfRange { id: 1000 })
        );
        assert!(matches!(
            imagenet_class("no such animal"),
            Err(ImageNetError::NoMatch { .. })
        ));
        assert!(matches!(
            imagenet_class("dog"),
            Err(ImageNetError::Ambiguous { count, .. }) if count > 1
        ));
    }
}
