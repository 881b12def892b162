//! Error codes of the Sluice protocol and their AWS names.
//!
//! Every code maps one-to-one to an AWS error: the JSON `__type` name, the
//! legacy Query-protocol code, the HTTP status and whether the caller is at
//! fault. A code's number, once used, is never reused for something else.

use std::fmt;

/// A typed error code carried in `Response.error.code` and `BatchFailure.code`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum ErrorCode {
    QueueDoesNotExist = 1,
    QueueDeletedRecently = 2,
    QueueNameExists = 3,
    PurgeQueueInProgress = 4,
    OverLimit = 5,
    MessageNotInflight = 6,
    ReceiptHandleIsInvalid = 7,
    InvalidIdFormat = 8,
    TooManyEntriesInBatchRequest = 9,
    EmptyBatchRequest = 10,
    BatchEntryIdsNotDistinct = 11,
    InvalidBatchEntryId = 12,
    BatchRequestTooLong = 13,
    InvalidMessageContents = 14,
    UnsupportedOperation = 15,
    InvalidAttributeName = 16,
    InvalidAttributeValue = 17,
    ResourceNotFound = 18,
    InvalidParameterValue = 19,
    MissingParameter = 20,
    InvalidAction = 21,
    InternalFailure = 22,
    ServiceUnavailable = 23,
    RequestThrottled = 24,
    InvalidParameterCombination = 25,
    /// The request frame was valid flatbuffers but not a valid request
    /// (for example a union member this server does not know).
    MalformedRequest = 26,
    /// SNS: a bad parameter (names, ARNs, attributes, filter policies, message size).
    InvalidParameter = 27,
    /// SNS: no such topic or subscription.
    NotFound = 28,
    /// SNS: more filter policies on a topic than allowed.
    FilterPolicyLimitExceeded = 29,
    /// SNS: more subscriptions than allowed.
    SubscriptionLimitExceeded = 30,
    /// SNS: more topics than allowed.
    TopicLimitExceeded = 31,
    /// Kinesis: the stream exists already, is changing, or the consumer is subscribed.
    ResourceInUse = 32,
    /// Kinesis: a parameter is invalid or out of range.
    InvalidArgument = 33,
    /// Kinesis: a shard iterator older than five minutes.
    ExpiredIterator = 34,
    /// Kinesis: a pagination token older than five minutes.
    ExpiredNextToken = 35,
    /// Kinesis: a limit on shards, consumers, tags or scaling operations.
    LimitExceeded = 36,
    /// Kinesis: a shard's read or write rate exceeded (only with --enforce-shard-limits).
    ProvisionedThroughputExceeded = 37,
    /// Kinesis: an operation not allowed for the stream's mode.
    Validation = 38,
    /// The caller may not do this (or a web page tried to).
    AccessDenied = 39,
    /// The request carries no signature and the daemon requires one.
    MissingAuthenticationToken = 40,
    /// The signature names an access key id the daemon does not know.
    InvalidClientTokenId = 41,
    /// The signature is not the one the secret gives for this request.
    SignatureDoesNotMatch = 42,
    /// The signature's parts are missing or malformed.
    IncompleteSignature = 43,
    /// Signed more than 5 minutes from the daemon's clock, or a presigned URL past its expiry.
    RequestExpired = 44,
    /// A KMS key that does not exist (KMS `NotFoundException`; SQS `KmsNotFound`, Kinesis
    /// `KMSNotFoundException`, SNS `KMSNotFound` when a resource's key is missing).
    KmsNotFound = 45,
    /// A disabled KMS key (KMS `DisabledException`).
    KmsDisabled = 46,
    /// A KMS key in a state that does not allow this (pending deletion; KMS `KMSInvalidStateException`).
    KmsInvalidState = 47,
    /// KMS: a ciphertext that is not one, was altered, or was made with another encryption context.
    InvalidCiphertext = 48,
    /// KMS: Decrypt named a key other than the one the ciphertext was made with.
    IncorrectKey = 49,
    /// KMS: an alias that exists already.
    AlreadyExists = 50,
    /// KMS: an alias name that is not `alias/…`, or one reserved for AWS-managed keys.
    InvalidAliasName = 51,
    /// The caller may not use the KMS key a queue, topic or stream is encrypted under
    /// (`kms:GenerateDataKey` to write, `kms:Decrypt` to read).
    KmsAccessDenied = 52,
    /// A stream consumer group's lease is no longer the caller's (it expired, was released or
    /// was taken over): stop processing the shard; LeaseShards says what the worker holds.
    LeaseLost = 53,
    /// Firehose: the version given is not the resource's current one (another change came first).
    ConcurrentModification = 54,
}

/// Every code, for tests and tables.
pub const ALL_ERROR_CODES: &[ErrorCode] = &[
    ErrorCode::QueueDoesNotExist,
    ErrorCode::QueueDeletedRecently,
    ErrorCode::QueueNameExists,
    ErrorCode::PurgeQueueInProgress,
    ErrorCode::OverLimit,
    ErrorCode::MessageNotInflight,
    ErrorCode::ReceiptHandleIsInvalid,
    ErrorCode::InvalidIdFormat,
    ErrorCode::TooManyEntriesInBatchRequest,
    ErrorCode::EmptyBatchRequest,
    ErrorCode::BatchEntryIdsNotDistinct,
    ErrorCode::InvalidBatchEntryId,
    ErrorCode::BatchRequestTooLong,
    ErrorCode::InvalidMessageContents,
    ErrorCode::UnsupportedOperation,
    ErrorCode::InvalidAttributeName,
    ErrorCode::InvalidAttributeValue,
    ErrorCode::ResourceNotFound,
    ErrorCode::InvalidParameterValue,
    ErrorCode::MissingParameter,
    ErrorCode::InvalidAction,
    ErrorCode::InternalFailure,
    ErrorCode::ServiceUnavailable,
    ErrorCode::RequestThrottled,
    ErrorCode::InvalidParameterCombination,
    ErrorCode::MalformedRequest,
    ErrorCode::InvalidParameter,
    ErrorCode::NotFound,
    ErrorCode::FilterPolicyLimitExceeded,
    ErrorCode::SubscriptionLimitExceeded,
    ErrorCode::TopicLimitExceeded,
    ErrorCode::ResourceInUse,
    ErrorCode::InvalidArgument,
    ErrorCode::ExpiredIterator,
    ErrorCode::ExpiredNextToken,
    ErrorCode::LimitExceeded,
    ErrorCode::ProvisionedThroughputExceeded,
    ErrorCode::Validation,
    ErrorCode::AccessDenied,
    ErrorCode::MissingAuthenticationToken,
    ErrorCode::InvalidClientTokenId,
    ErrorCode::SignatureDoesNotMatch,
    ErrorCode::IncompleteSignature,
    ErrorCode::RequestExpired,
    ErrorCode::KmsNotFound,
    ErrorCode::KmsDisabled,
    ErrorCode::KmsInvalidState,
    ErrorCode::InvalidCiphertext,
    ErrorCode::IncorrectKey,
    ErrorCode::AlreadyExists,
    ErrorCode::InvalidAliasName,
    ErrorCode::KmsAccessDenied,
    ErrorCode::LeaseLost,
    ErrorCode::ConcurrentModification,
];

impl ErrorCode {
    /// Decodes a wire value; unknown values (from a newer server) are `None`.
    pub fn from_u16(value: u16) -> Option<ErrorCode> {
        ALL_ERROR_CODES.iter().copied().find(|code| *code as u16 == value)
    }

    /// The AWS JSON error shape name (`__type` after the `#`).
    pub fn aws_name(self) -> &'static str {
        use ErrorCode::*;
        match self {
            QueueDoesNotExist => "QueueDoesNotExist",
            QueueDeletedRecently => "QueueDeletedRecently",
            QueueNameExists => "QueueNameExists",
            PurgeQueueInProgress => "PurgeQueueInProgress",
            OverLimit => "OverLimit",
            MessageNotInflight => "MessageNotInflight",
            ReceiptHandleIsInvalid => "ReceiptHandleIsInvalid",
            InvalidIdFormat => "InvalidIdFormat",
            TooManyEntriesInBatchRequest => "TooManyEntriesInBatchRequest",
            EmptyBatchRequest => "EmptyBatchRequest",
            BatchEntryIdsNotDistinct => "BatchEntryIdsNotDistinct",
            InvalidBatchEntryId => "InvalidBatchEntryId",
            BatchRequestTooLong => "BatchRequestTooLong",
            InvalidMessageContents => "InvalidMessageContents",
            UnsupportedOperation => "UnsupportedOperation",
            InvalidAttributeName => "InvalidAttributeName",
            InvalidAttributeValue => "InvalidAttributeValue",
            ResourceNotFound => "ResourceNotFoundException",
            InvalidParameterValue => "InvalidParameterValue",
            MissingParameter => "MissingParameter",
            InvalidAction => "InvalidAction",
            InternalFailure => "InternalFailure",
            ServiceUnavailable => "ServiceUnavailable",
            RequestThrottled => "RequestThrottled",
            InvalidParameterCombination => "InvalidParameterCombination",
            MalformedRequest => "MalformedQueryString",
            InvalidParameter => "InvalidParameter",
            NotFound => "NotFound",
            FilterPolicyLimitExceeded => "FilterPolicyLimitExceeded",
            SubscriptionLimitExceeded => "SubscriptionLimitExceeded",
            TopicLimitExceeded => "TopicLimitExceeded",
            ResourceInUse => "ResourceInUseException",
            InvalidArgument => "InvalidArgumentException",
            ExpiredIterator => "ExpiredIteratorException",
            ExpiredNextToken => "ExpiredNextTokenException",
            LimitExceeded => "LimitExceededException",
            ProvisionedThroughputExceeded => "ProvisionedThroughputExceededException",
            Validation => "ValidationException",
            AccessDenied => "AccessDenied",
            MissingAuthenticationToken => "MissingAuthenticationToken",
            InvalidClientTokenId => "InvalidClientTokenId",
            SignatureDoesNotMatch => "SignatureDoesNotMatch",
            IncompleteSignature => "IncompleteSignature",
            RequestExpired => "RequestExpired",
            // Kinesis' names; the key service, SQS and SNS name them their own way (`kms_name`, `sqs_kms_name`, `sns_name`).
            KmsNotFound => "KMSNotFoundException",
            KmsDisabled => "KMSDisabledException",
            KmsInvalidState => "KMSInvalidStateException",
            InvalidCiphertext => "InvalidCiphertextException",
            IncorrectKey => "IncorrectKeyException",
            AlreadyExists => "AlreadyExistsException",
            InvalidAliasName => "InvalidAliasNameException",
            KmsAccessDenied => "KMSAccessDeniedException",
            LeaseLost => "LeaseLostException",
            ConcurrentModification => "ConcurrentModificationException",
        }
    }

    /// The legacy SQS Query-protocol code (also the first half of `x-amzn-query-error`).
    pub fn query_code(self) -> &'static str {
        use ErrorCode::*;
        match self {
            QueueDoesNotExist => "AWS.SimpleQueueService.NonExistentQueue",
            QueueDeletedRecently => "AWS.SimpleQueueService.QueueDeletedRecently",
            QueueNameExists => "QueueAlreadyExists",
            PurgeQueueInProgress => "AWS.SimpleQueueService.PurgeQueueInProgress",
            MessageNotInflight => "AWS.SimpleQueueService.MessageNotInflight",
            TooManyEntriesInBatchRequest => "AWS.SimpleQueueService.TooManyEntriesInBatchRequest",
            EmptyBatchRequest => "AWS.SimpleQueueService.EmptyBatchRequest",
            BatchEntryIdsNotDistinct => "AWS.SimpleQueueService.BatchEntryIdsNotDistinct",
            InvalidBatchEntryId => "AWS.SimpleQueueService.InvalidBatchEntryId",
            BatchRequestTooLong => "AWS.SimpleQueueService.BatchRequestTooLong",
            UnsupportedOperation => "AWS.SimpleQueueService.UnsupportedOperation",
            KmsNotFound => "KMS.NotFoundException",
            KmsDisabled => "KMS.DisabledException",
            KmsInvalidState => "KMS.KMSInvalidStateException",
            KmsAccessDenied => "KMS.AccessDeniedException",
            other => other.aws_name(),
        }
    }

    /// The HTTP status AWS answers with.
    pub fn http_status(self) -> u16 {
        use ErrorCode::*;
        match self {
            PurgeQueueInProgress | OverLimit | RequestThrottled => 403,
            AccessDenied | MissingAuthenticationToken | InvalidClientTokenId | SignatureDoesNotMatch => 403,
            FilterPolicyLimitExceeded | SubscriptionLimitExceeded | TopicLimitExceeded => 403,
            ResourceNotFound | MalformedRequest | NotFound => 404,
            InternalFailure => 500,
            ServiceUnavailable => 503,
            _ => 400,
        }
    }

    /// True when the caller is at fault (`Sender`), false for server faults (`Receiver`).
    pub fn sender_fault(self) -> bool {
        !matches!(self, ErrorCode::InternalFailure | ErrorCode::ServiceUnavailable)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.aws_name())
    }
}

/// An operation's failure: a typed code and a human message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpError {
    pub code: ErrorCode,
    pub message: String,
}

impl OpError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> OpError {
        OpError { code, message: message.into() }
    }
}

impl fmt::Display for OpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.aws_name(), self.message)
    }
}

impl std::error::Error for OpError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_round_trips_through_its_wire_value() {
        for code in ALL_ERROR_CODES {
            assert_eq!(ErrorCode::from_u16(*code as u16), Some(*code));
        }
        assert_eq!(ErrorCode::from_u16(0), None);
        assert_eq!(ErrorCode::from_u16(u16::MAX), None);
    }

    #[test]
    fn wire_values_are_distinct() {
        let mut values: Vec<u16> = ALL_ERROR_CODES.iter().map(|c| *c as u16).collect();
        values.sort_unstable();
        values.dedup();
        assert_eq!(values.len(), ALL_ERROR_CODES.len());
    }

    #[test]
    fn legacy_codes_match_aws() {
        assert_eq!(ErrorCode::QueueDoesNotExist.query_code(), "AWS.SimpleQueueService.NonExistentQueue");
        assert_eq!(ErrorCode::QueueNameExists.query_code(), "QueueAlreadyExists");
        assert_eq!(ErrorCode::PurgeQueueInProgress.http_status(), 403);
        assert!(!ErrorCode::InternalFailure.sender_fault());
    }
}
