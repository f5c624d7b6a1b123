"""Expected failures of tests/preprocessing/sklearn_scaler_parity.py, one per test id, with the reason.

scikit-learn 1.9.1's sklearn/preprocessing/tests/test_data.py with fastnn's StandardScaler,
MinMaxScaler and RobustScaler substituted. Every entry is sparse input: fastnn's scalers
refuse it on purpose (a TypeError naming scikit-learn's class for sparse data; see
fastnn.preprocessing). No test fails for a feature scikit-learn added after 1.9.1 (the
file is 1.9.1's own). The run marks these strict xfails, so an entry that starts passing
is reported and must be removed here.
"""
SKLEARN_VERSION = "1.9.1"

_DENSE_ONLY = "fastnn's scalers are dense-only (TypeError naming scikit-learn's class for sparse data)"

EXPECTED_FAILURES: dict[str, str] = {
    "test_partial_fit_sparse_input[csc_array-None]":
        f"sparse input (csc_array): {_DENSE_ONLY}",
    "test_partial_fit_sparse_input[csc_array-True]":
        f"sparse input (csc_array): {_DENSE_ONLY}",
    "test_partial_fit_sparse_input[csc_matrix-None]":
        f"sparse input (csc_matrix): {_DENSE_ONLY}",
    "test_partial_fit_sparse_input[csc_matrix-True]":
        f"sparse input (csc_matrix): {_DENSE_ONLY}",
    "test_partial_fit_sparse_input[csr_array-None]":
        f"sparse input (csr_array): {_DENSE_ONLY}",
    "test_partial_fit_sparse_input[csr_array-True]":
        f"sparse input (csr_array): {_DENSE_ONLY}",
    "test_partial_fit_sparse_input[csr_matrix-None]":
        f"sparse input (csr_matrix): {_DENSE_ONLY}",
    "test_partial_fit_sparse_input[csr_matrix-True]":
        f"sparse input (csr_matrix): {_DENSE_ONLY}",
    "test_robust_scaler_attributes[X1-False-False]":
        f"sparse input (X1 is a sparse coo_array): {_DENSE_ONLY}",
    "test_robust_scaler_attributes[X1-True-False]":
        f"sparse input (X1 is a sparse coo_array): {_DENSE_ONLY}",
    "test_robust_scaler_col_zero_sparse[csr_array]":
        f"sparse input (csr_array): {_DENSE_ONLY}",
    "test_robust_scaler_col_zero_sparse[csr_matrix]":
        f"sparse input (csr_matrix): {_DENSE_ONLY}",
    "test_robust_scaler_equivalence_dense_sparse[None-0.05]":
        f"sparse input (CSC copy of the dense X): {_DENSE_ONLY}",
    "test_robust_scaler_equivalence_dense_sparse[None-0.1]":
        f"sparse input (CSC copy of the dense X): {_DENSE_ONLY}",
    "test_robust_scaler_equivalence_dense_sparse[None-0.5]":
        f"sparse input (CSC copy of the dense X): {_DENSE_ONLY}",
    "test_robust_scaler_equivalence_dense_sparse[None-0]":
        f"sparse input (CSC copy of the dense X): {_DENSE_ONLY}",
    "test_robust_scaler_equivalence_dense_sparse[None-1]":
        f"sparse input (CSC copy of the dense X): {_DENSE_ONLY}",
    "test_robust_scaler_equivalence_dense_sparse[negative-0.05]":
        f"sparse input (CSC copy of the dense X): {_DENSE_ONLY}",
    "test_robust_scaler_equivalence_dense_sparse[negative-0.1]":
        f"sparse input (CSC copy of the dense X): {_DENSE_ONLY}",
    "test_robust_scaler_equivalence_dense_sparse[negative-0.5]":
        f"sparse input (CSC copy of the dense X): {_DENSE_ONLY}",
    "test_robust_scaler_equivalence_dense_sparse[negative-0]":
        f"sparse input (CSC copy of the dense X): {_DENSE_ONLY}",
    "test_robust_scaler_equivalence_dense_sparse[negative-1]":
        f"sparse input (CSC copy of the dense X): {_DENSE_ONLY}",
    "test_robust_scaler_equivalence_dense_sparse[positive-0.05]":
        f"sparse input (CSC copy of the dense X): {_DENSE_ONLY}",
    "test_robust_scaler_equivalence_dense_sparse[positive-0.1]":
        f"sparse input (CSC copy of the dense X): {_DENSE_ONLY}",
    "test_robust_scaler_equivalence_dense_sparse[positive-0.5]":
        f"sparse input (CSC copy of the dense X): {_DENSE_ONLY}",
    "test_robust_scaler_equivalence_dense_sparse[positive-0]":
        f"sparse input (CSC copy of the dense X): {_DENSE_ONLY}",
    "test_robust_scaler_equivalence_dense_sparse[positive-1]":
        f"sparse input (CSC copy of the dense X): {_DENSE_ONLY}",
    "test_robust_scaler_equivalence_dense_sparse[zeros-0.05]":
        f"sparse input (CSC copy of the dense X): {_DENSE_ONLY}",
    "test_robust_scaler_equivalence_dense_sparse[zeros-0.1]":
        f"sparse input (CSC copy of the dense X): {_DENSE_ONLY}",
    "test_robust_scaler_equivalence_dense_sparse[zeros-0.5]":
        f"sparse input (CSC copy of the dense X): {_DENSE_ONLY}",
    "test_robust_scaler_equivalence_dense_sparse[zeros-0]":
        f"sparse input (CSC copy of the dense X): {_DENSE_ONLY}",
    "test_robust_scaler_equivalence_dense_sparse[zeros-1]":
        f"sparse input (CSC copy of the dense X): {_DENSE_ONLY}",
    "test_robust_scaler_error_sparse":
        f"sparse input (coo_array; expects scikit-learn's 'Cannot center sparse matrices' ValueError): {_DENSE_ONLY}",
    "test_robust_scaler_transform_one_row_csr[csr_array]":
        f"sparse input (csr_array): {_DENSE_ONLY}",
    "test_robust_scaler_transform_one_row_csr[csr_matrix]":
        f"sparse input (csr_matrix): {_DENSE_ONLY}",
    "test_scale_sparse_with_mean_raise_exception[csc_array]":
        f"sparse input (csc_array): {_DENSE_ONLY}",
    "test_scale_sparse_with_mean_raise_exception[csc_matrix]":
        f"sparse input (csc_matrix): {_DENSE_ONLY}",
    "test_scale_sparse_with_mean_raise_exception[csr_array]":
        f"sparse input (csr_array): {_DENSE_ONLY}",
    "test_scale_sparse_with_mean_raise_exception[csr_matrix]":
        f"sparse input (csr_matrix): {_DENSE_ONLY}",
    "test_scaler_int[csc_array]":
        f"sparse input (csc_array): {_DENSE_ONLY}",
    "test_scaler_int[csc_matrix]":
        f"sparse input (csc_matrix): {_DENSE_ONLY}",
    "test_scaler_int[csr_array]":
        f"sparse input (csr_array): {_DENSE_ONLY}",
    "test_scaler_int[csr_matrix]":
        f"sparse input (csr_matrix): {_DENSE_ONLY}",
    "test_scaler_n_samples_seen_with_nan[csc_array-False-False]":
        f"sparse input (csc_array): {_DENSE_ONLY}",
    "test_scaler_n_samples_seen_with_nan[csc_array-True-False]":
        f"sparse input (csc_array): {_DENSE_ONLY}",
    "test_scaler_n_samples_seen_with_nan[csc_matrix-False-False]":
        f"sparse input (csc_matrix): {_DENSE_ONLY}",
    "test_scaler_n_samples_seen_with_nan[csc_matrix-True-False]":
        f"sparse input (csc_matrix): {_DENSE_ONLY}",
    "test_scaler_n_samples_seen_with_nan[csr_array-False-False]":
        f"sparse input (csr_array): {_DENSE_ONLY}",
    "test_scaler_n_samples_seen_with_nan[csr_array-True-False]":
        f"sparse input (csr_array): {_DENSE_ONLY}",
    "test_scaler_n_samples_seen_with_nan[csr_matrix-False-False]":
        f"sparse input (csr_matrix): {_DENSE_ONLY}",
    "test_scaler_n_samples_seen_with_nan[csr_matrix-True-False]":
        f"sparse input (csr_matrix): {_DENSE_ONLY}",
    "test_scaler_return_identity[csc_array]":
        f"sparse input (csc_array): {_DENSE_ONLY}",
    "test_scaler_return_identity[csc_matrix]":
        f"sparse input (csc_matrix): {_DENSE_ONLY}",
    "test_scaler_return_identity[csr_array]":
        f"sparse input (csr_array): {_DENSE_ONLY}",
    "test_scaler_return_identity[csr_matrix]":
        f"sparse input (csr_matrix): {_DENSE_ONLY}",
    "test_scaler_without_centering[csc_array-None]":
        f"sparse input (csc_array): {_DENSE_ONLY}",
    "test_scaler_without_centering[csc_array-True]":
        f"sparse input (csc_array): {_DENSE_ONLY}",
    "test_scaler_without_centering[csc_matrix-None]":
        f"sparse input (csc_matrix): {_DENSE_ONLY}",
    "test_scaler_without_centering[csc_matrix-True]":
        f"sparse input (csc_matrix): {_DENSE_ONLY}",
    "test_scaler_without_centering[csr_array-None]":
        f"sparse input (csr_array): {_DENSE_ONLY}",
    "test_scaler_without_centering[csr_array-True]":
        f"sparse input (csr_array): {_DENSE_ONLY}",
    "test_scaler_without_centering[csr_matrix-None]":
        f"sparse input (csr_matrix): {_DENSE_ONLY}",
    "test_scaler_without_centering[csr_matrix-True]":
        f"sparse input (csr_matrix): {_DENSE_ONLY}",
    "test_scaler_without_copy[csc_array]":
        f"sparse input (csc_array): {_DENSE_ONLY}",
    "test_scaler_without_copy[csc_matrix]":
        f"sparse input (csc_matrix): {_DENSE_ONLY}",
    "test_scaler_without_copy[csr_array]":
        f"sparse input (csr_array): {_DENSE_ONLY}",
    "test_scaler_without_copy[csr_matrix]":
        f"sparse input (csr_matrix): {_DENSE_ONLY}",
    "test_standard_scaler_constant_features[0-float32-False-csc_array-scaler0]":
        f"sparse input (csc_array): {_DENSE_ONLY}",
    "test_standard_scaler_constant_features[0-float32-False-csc_array-scaler1]":
        f"sparse input (csc_array): {_DENSE_ONLY}",
    "test_standard_scaler_constant_features[0-float32-False-csc_matrix-scaler0]":
        f"sparse input (csc_matrix): {_DENSE_ONLY}",
    "test_standard_scaler_constant_features[0-float32-False-csc_matrix-scaler1]":
        f"sparse input (csc_matrix): {_DENSE_ONLY}",
    "test_standard_scaler_constant_features[0-float32-False-csr_array-scaler0]":
        f"sparse input (csr_array): {_DENSE_ONLY}",
    "test_standard_scaler_constant_features[0-float32-False-csr_array-scaler1]":
        f"sparse input (csr_array): {_DENSE_ONLY}",
    "test_standard_scaler_constant_features[0-float32-False-csr_matrix-scaler0]":
        f"sparse input (csr_matrix): {_DENSE_ONLY}",
    "test_standard_scaler_constant_features[0-float32-False-csr_matrix-scaler1]":
        f"sparse input (csr_matrix): {_DENSE_ONLY}",
    "test_standard_scaler_constant_features[0-float32-True-csc_array-scaler0]":
        f"sparse input (csc_array): {_DENSE_ONLY}",
    "test_standard_scaler_constant_features[0-float32-True-csc_matrix-scaler0]":
        f"sparse input (csc_matrix): {_DENSE_ONLY}",
    "test_standard_scaler_constant_features[0-float32-True-csr_array-scaler0]":
        f"sparse input (csr_array): {_DENSE_ONLY}",
    "test_standard_scaler_constant_features[0-float32-True-csr_matrix-scaler0]":
        f"sparse input (csr_matrix): {_DENSE_ONLY}",
    "test_standard_scaler_constant_features[0-float64-False-csc_array-scaler0]":
        f"sparse input (csc_array): {_DENSE_ONLY}",
    "test_standard_scaler_constant_features[0-float64-False-csc_array-scaler1]":
        f"sparse input (csc_array): {_DENSE_ONLY}",
    "test_standard_scaler_constant_features[0-float64-False-csc_matrix-scaler0]":
        f"sparse input (csc_matrix): {_DENSE_ONLY}",
    "test_standard_scaler_constant_features[0-float64-False-csc_matrix-scaler1]":
        f"sparse input (csc_matrix): {_DENSE_ONLY}",
    "test_standard_scaler_constant_features[0-float64-False-csr_array-scaler0]":
        f"sparse input (csr_array): {_DENSE_ONLY}",
    "test_standard_scaler_constant_features[0-float64-False-csr_array-scaler1]":
        f"sparse input (csr_array): {_DENSE_ONLY}",
    "test_standard_scaler_constant_features[0-float64-False-csr_matrix-scaler0]":
        f"sparse input (csr_matrix): {_DENSE_ONLY}",
    "test_standard_scaler_constant_features[0-float64-False-csr_matrix-scaler1]":
        f"sparse input (csr_matrix): {_DENSE_ONLY}",
    "test_standard_scaler_constant_features[0-float64-True-csc_array-scaler0]":
        f"sparse input (csc_array): {_DENSE_ONLY}",
    "test_standard_scaler_constant_features[0-float64-True-csc_matrix-scaler0]":
        f"sparse input (csc_matrix): {_DENSE_ONLY}",
    "test_standard_scaler_constant_features[0-float64-True-csr_array-scaler0]":
        f"sparse input (csr_array): {_DENSE_ONLY}",
    "test_standard_scaler_constant_features[0-float64-True-csr_matrix-scaler0]":
        f"sparse input (csr_matrix): {_DENSE_ONLY}",
    "test_standard_scaler_constant_features[1.0-float32-False-csc_array-scaler0]":
        f"sparse input (csc_array): {_DENSE_ONLY}",
    "test_standard_scaler_constant_features[1.0-float32-False-csc_array-scaler1]":
        f"sparse input (csc_array): {_DENSE_ONLY}",
    "test_standard_scaler_constant_features[1.0-float32-False-csc_matrix-scaler0]":
        f"sparse input (csc_matrix): {_DENSE_ONLY}",
    "test_standard_scaler_constant_features[1.0-float32-False-csc_matrix-scaler1]":
        f"sparse input (csc_matrix): {_DENSE_ONLY}",
    "test_standard_scaler_constant_features[1.0-float32-False-csr_array-scaler0]":
        f"sparse input (csr_array): {_DENSE_ONLY}",
    "test_standard_scaler_constant_features[1.0-float32-False-csr_array-scaler1]":
        f"sparse input (csr_array): {_DENSE_ONLY}",
    "test_standard_scaler_constant_features[1.0-float32-False-csr_matrix-scaler0]":
        f"sparse input (csr_matrix): {_DENSE_ONLY}",
    "test_standard_scaler_constant_features[1.0-float32-False-csr_matrix-scaler1]":
        f"sparse input (csr_matrix): {_DENSE_ONLY}",
    "test_standard_scaler_constant_features[1.0-float32-True-csc_array-scaler0]":
        f"sparse input (csc_array): {_DENSE_ONLY}",
    "test_standard_scaler_constant_features[1.0-float32-True-csc_matrix-scaler0]":
        f"sparse input (csc_matrix): {_DENSE_ONLY}",
    "test_standard_scaler_constant_features[1.0-float32-True-csr_array-scaler0]":
        f"sparse input (csr_array): {_DENSE_ONLY}",
    "test_standard_scaler_constant_features[1.0-float32-True-csr_matrix-scaler0]":
        f"sparse input (csr_matrix): {_DENSE_ONLY}",
    "test_standard_scaler_constant_features[1.0-float64-False-csc_array-scaler0]":
        f"sparse input (csc_array): {_DENSE_ONLY}",
    "test_standard_scaler_constant_features[1.0-float64-False-csc_array-scaler1]":
        f"sparse input (csc_array): {_DENSE_ONLY}",
    "test_standard_scaler_constant_features[1.0-float64-False-csc_matrix-scaler0]":
        f"sparse input (csc_matrix): {_DENSE_ONLY}",
    "test_standard_scaler_constant_features[1.0-float64-False-csc_matrix-scaler1]":
        f"sparse input (csc_matrix): {_DENSE_ONLY}",
    "test_standard_scaler_constant_features[1.0-float64-False-csr_array-scaler0]":
        f"sparse input (csr_array): {_DENSE_ONLY}",
    "test_standard_scaler_constant_features[1.0-float64-False-csr_array-scaler1]":
        f"sparse input (csr_array): {_DENSE_ONLY}",
    "test_standard_scaler_constant_features[1.0-float64-False-csr_matrix-scaler0]":
        f"sparse input (csr_matrix): {_DENSE_ONLY}",
    "test_standard_scaler_constant_features[1.0-float64-False-csr_matrix-scaler1]":
        f"sparse input (csr_matrix): {_DENSE_ONLY}",
    "test_standard_scaler_constant_features[1.0-float64-True-csc_array-scaler0]":
        f"sparse input (csc_array): {_DENSE_ONLY}",
    "test_standard_scaler_constant_features[1.0-float64-True-csc_matrix-scaler0]":
        f"sparse input (csc_matrix): {_DENSE_ONLY}",
    "test_standard_scaler_constant_features[1.0-float64-True-csr_array-scaler0]":
        f"sparse input (csr_array): {_DENSE_ONLY}",
    "test_standard_scaler_constant_features[1.0-float64-True-csr_matrix-scaler0]":
        f"sparse input (csr_matrix): {_DENSE_ONLY}",
    "test_standard_scaler_constant_features[100.0-float32-False-csc_array-scaler0]":
        f"sparse input (csc_array): {_DENSE_ONLY}",
    "test_standard_scaler_constant_features[100.0-float32-False-csc_array-scaler1]":
        f"sparse input (csc_array): {_DENSE_ONLY}",
    "test_standard_scaler_constant_features[100.0-float32-False-csc_matrix-scaler0]":
        f"sparse input (csc_matrix): {_DENSE_ONLY}",
    "test_standard_scaler_constant_features[100.0-float32-False-csc_matrix-scaler1]":
        f"sparse input (csc_matrix): {_DENSE_ONLY}",
    "test_standard_scaler_constant_features[100.0-float32-False-csr_array-scaler0]":
        f"sparse input (csr_array): {_DENSE_ONLY}",
    "test_standard_scaler_constant_features[100.0-float32-False-csr_array-scaler1]":
        f"sparse input (csr_array): {_DENSE_ONLY}",
    "test_standard_scaler_constant_features[100.0-float32-False-csr_matrix-scaler0]":
        f"sparse input (csr_matrix): {_DENSE_ONLY}",
    "test_standard_scaler_constant_features[100.0-float32-False-csr_matrix-scaler1]":
        f"sparse input (csr_matrix): {_DENSE_ONLY}",
    "test_standard_scaler_constant_features[100.0-float32-True-csc_array-scaler0]":
        f"sparse input (csc_array): {_DENSE_ONLY}",
    "test_standard_scaler_constant_features[100.0-float32-True-csc_matrix-scaler0]":
        f"sparse input (csc_matrix): {_DENSE_ONLY}",
    "test_standard_scaler_constant_features[100.0-float32-True-csr_array-scaler0]":
        f"sparse input (csr_array): {_DENSE_ONLY}",
    "test_standard_scaler_constant_features[100.0-float32-True-csr_matrix-scaler0]":
        f"sparse input (csr_matrix): {_DENSE_ONLY}",
    "test_standard_scaler_constant_features[100.0-float64-False-csc_array-scaler0]":
        f"sparse input (csc_array): {_DENSE_ONLY}",
    "test_standard_scaler_constant_features[100.0-float64-False-csc_array-scaler1]":
        f"sparse input (csc_array): {_DENSE_ONLY}",
    "test_standard_scaler_constant_features[100.0-float64-False-csc_matrix-scaler0]":
        f"sparse input (csc_matrix): {_DENSE_ONLY}",
    "test_standard_scaler_constant_features[100.0-float64-False-csc_matrix-scaler1]":
        f"sparse input (csc_matrix): {_DENSE_ONLY}",
    "test_standard_scaler_constant_features[100.0-float64-False-csr_array-scaler0]":
        f"sparse input (csr_array): {_DENSE_ONLY}",
    "test_standard_scaler_constant_features[100.0-float64-False-csr_array-scaler1]":
        f"sparse input (csr_array): {_DENSE_ONLY}",
    "test_standard_scaler_constant_features[100.0-float64-False-csr_matrix-scaler0]":
        f"sparse input (csr_matrix): {_DENSE_ONLY}",
    "test_standard_scaler_constant_features[100.0-float64-False-csr_matrix-scaler1]":
        f"sparse input (csr_matrix): {_DENSE_ONLY}",
    "test_standard_scaler_constant_features[100.0-float64-True-csc_array-scaler0]":
        f"sparse input (csc_array): {_DENSE_ONLY}",
    "test_standard_scaler_constant_features[100.0-float64-True-csc_matrix-scaler0]":
        f"sparse input (csc_matrix): {_DENSE_ONLY}",
    "test_standard_scaler_constant_features[100.0-float64-True-csr_array-scaler0]":
        f"sparse input (csr_array): {_DENSE_ONLY}",
    "test_standard_scaler_constant_features[100.0-float64-True-csr_matrix-scaler0]":
        f"sparse input (csr_matrix): {_DENSE_ONLY}",
    "test_standard_scaler_dtype[False-csc_array]":
        f"sparse input (csc_array): {_DENSE_ONLY}",
    "test_standard_scaler_dtype[False-csc_matrix]":
        f"sparse input (csc_matrix): {_DENSE_ONLY}",
    "test_standard_scaler_dtype[False-csr_array]":
        f"sparse input (csr_array): {_DENSE_ONLY}",
    "test_standard_scaler_dtype[False-csr_matrix]":
        f"sparse input (csr_matrix): {_DENSE_ONLY}",
    "test_standard_scaler_dtype[True-csc_array]":
        f"sparse input (csc_array): {_DENSE_ONLY}",
    "test_standard_scaler_dtype[True-csc_matrix]":
        f"sparse input (csc_matrix): {_DENSE_ONLY}",
    "test_standard_scaler_dtype[True-csr_array]":
        f"sparse input (csr_array): {_DENSE_ONLY}",
    "test_standard_scaler_dtype[True-csr_matrix]":
        f"sparse input (csr_matrix): {_DENSE_ONLY}",
    "test_standard_scaler_near_constant_features[csc_array-float32-1-10000]":
        f"sparse input (csc_array): {_DENSE_ONLY}",
    "test_standard_scaler_near_constant_features[csc_array-float32-1-100]":
        f"sparse input (csc_array): {_DENSE_ONLY}",
    "test_standard_scaler_near_constant_features[csc_array-float32-1-10]":
        f"sparse input (csc_array): {_DENSE_ONLY}",
    "test_standard_scaler_near_constant_features[csc_array-float32-10000000000.0-10000]":
        f"sparse input (csc_array): {_DENSE_ONLY}",
    "test_standard_scaler_near_constant_features[csc_array-float32-10000000000.0-100]":
        f"sparse input (csc_array): {_DENSE_ONLY}",
    "test_standard_scaler_near_constant_features[csc_array-float32-10000000000.0-10]":
        f"sparse input (csc_array): {_DENSE_ONLY}",
    "test_standard_scaler_near_constant_features[csc_array-float32-1e-10-10000]":
        f"sparse input (csc_array): {_DENSE_ONLY}",
    "test_standard_scaler_near_constant_features[csc_array-float32-1e-10-100]":
        f"sparse input (csc_array): {_DENSE_ONLY}",
    "test_standard_scaler_near_constant_features[csc_array-float32-1e-10-10]":
        f"sparse input (csc_array): {_DENSE_ONLY}",
    "test_standard_scaler_near_constant_features[csc_array-float64-1-10000]":
        f"sparse input (csc_array): {_DENSE_ONLY}",
    "test_standard_scaler_near_constant_features[csc_array-float64-1-100]":
        f"sparse input (csc_array): {_DENSE_ONLY}",
    "test_standard_scaler_near_constant_features[csc_array-float64-1-10]":
        f"sparse input (csc_array): {_DENSE_ONLY}",
    "test_standard_scaler_near_constant_features[csc_array-float64-10000000000.0-10000]":
        f"sparse input (csc_array): {_DENSE_ONLY}",
    "test_standard_scaler_near_constant_features[csc_array-float64-10000000000.0-100]":
        f"sparse input (csc_array): {_DENSE_ONLY}",
    "test_standard_scaler_near_constant_features[csc_array-float64-10000000000.0-10]":
        f"sparse input (csc_array): {_DENSE_ONLY}",
    "test_standard_scaler_near_constant_features[csc_array-float64-1e-10-10000]":
        f"sparse input (csc_array): {_DENSE_ONLY}",
    "test_standard_scaler_near_constant_features[csc_array-float64-1e-10-100]":
        f"sparse input (csc_array): {_DENSE_ONLY}",
    "test_standard_scaler_near_constant_features[csc_array-float64-1e-10-10]":
        f"sparse input (csc_array): {_DENSE_ONLY}",
    "test_standard_scaler_near_constant_features[csc_matrix-float32-1-10000]":
        f"sparse input (csc_matrix): {_DENSE_ONLY}",
    "test_standard_scaler_near_constant_features[csc_matrix-float32-1-100]":
        f"sparse input (csc_matrix): {_DENSE_ONLY}",
    "test_standard_scaler_near_constant_features[csc_matrix-float32-1-10]":
        f"sparse input (csc_matrix): {_DENSE_ONLY}",
    "test_standard_scaler_near_constant_features[csc_matrix-float32-10000000000.0-10000]":
        f"sparse input (csc_matrix): {_DENSE_ONLY}",
    "test_standard_scaler_near_constant_features[csc_matrix-float32-10000000000.0-100]":
        f"sparse input (csc_matrix): {_DENSE_ONLY}",
    "test_standard_scaler_near_constant_features[csc_matrix-float32-10000000000.0-10]":
        f"sparse input (csc_matrix): {_DENSE_ONLY}",
    "test_standard_scaler_near_constant_features[csc_matrix-float32-1e-10-10000]":
        f"sparse input (csc_matrix): {_DENSE_ONLY}",
    "test_standard_scaler_near_constant_features[csc_matrix-float32-1e-10-100]":
        f"sparse input (csc_matrix): {_DENSE_ONLY}",
    "test_standard_scaler_near_constant_features[csc_matrix-float32-1e-10-10]":
        f"sparse input (csc_matrix): {_DENSE_ONLY}",
    "test_standard_scaler_near_constant_features[csc_matrix-float64-1-10000]":
        f"sparse input (csc_matrix): {_DENSE_ONLY}",
    "test_standard_scaler_near_constant_features[csc_matrix-float64-1-100]":
        f"sparse input (csc_matrix): {_DENSE_ONLY}",
    "test_standard_scaler_near_constant_features[csc_matrix-float64-1-10]":
        f"sparse input (csc_matrix): {_DENSE_ONLY}",
    "test_standard_scaler_near_constant_features[csc_matrix-float64-10000000000.0-10000]":
        f"sparse input (csc_matrix): {_DENSE_ONLY}",
    "test_standard_scaler_near_constant_features[csc_matrix-float64-10000000000.0-100]":
        f"sparse input (csc_matrix): {_DENSE_ONLY}",
    "test_standard_scaler_near_constant_features[csc_matrix-float64-10000000000.0-10]":
        f"sparse input (csc_matrix): {_DENSE_ONLY}",
    "test_standard_scaler_near_constant_features[csc_matrix-float64-1e-10-10000]":
        f"sparse input (csc_matrix): {_DENSE_ONLY}",
    "test_standard_scaler_near_constant_features[csc_matrix-float64-1e-10-100]":
        f"sparse input (csc_matrix): {_DENSE_ONLY}",
    "test_standard_scaler_near_constant_features[csc_matrix-float64-1e-10-10]":
        f"sparse input (csc_matrix): {_DENSE_ONLY}",
    "test_standard_scaler_near_constant_features[csr_array-float32-1-10000]":
        f"sparse input (csr_array): {_DENSE_ONLY}",
    "test_standard_scaler_near_constant_features[csr_array-float32-1-100]":
        f"sparse input (csr_array): {_DENSE_ONLY}",
    "test_standard_scaler_near_constant_features[csr_array-float32-1-10]":
        f"sparse input (csr_array): {_DENSE_ONLY}",
    "test_standard_scaler_near_constant_features[csr_array-float32-10000000000.0-10000]":
        f"sparse input (csr_array): {_DENSE_ONLY}",
    "test_standard_scaler_near_constant_features[csr_array-float32-10000000000.0-100]":
        f"sparse input (csr_array): {_DENSE_ONLY}",
    "test_standard_scaler_near_constant_features[csr_array-float32-10000000000.0-10]":
        f"sparse input (csr_array): {_DENSE_ONLY}",
    "test_standard_scaler_near_constant_features[csr_array-float32-1e-10-10000]":
        f"sparse input (csr_array): {_DENSE_ONLY}",
    "test_standard_scaler_near_constant_features[csr_array-float32-1e-10-100]":
        f"sparse input (csr_array): {_DENSE_ONLY}",
    "test_standard_scaler_near_constant_features[csr_array-float32-1e-10-10]":
        f"sparse input (csr_array): {_DENSE_ONLY}",
    "test_standard_scaler_near_constant_features[csr_array-float64-1-10000]":
        f"sparse input (csr_array): {_DENSE_ONLY}",
    "test_standard_scaler_near_constant_features[csr_array-float64-1-100]":
        f"sparse input (csr_array): {_DENSE_ONLY}",
    "test_standard_scaler_near_constant_features[csr_array-float64-1-10]":
        f"sparse input (csr_array): {_DENSE_ONLY}",
    "test_standard_scaler_near_constant_features[csr_array-float64-10000000000.0-10000]":
        f"sparse input (csr_array): {_DENSE_ONLY}",
    "test_standard_scaler_near_constant_features[csr_array-float64-10000000000.0-100]":
        f"sparse input (csr_array): {_DENSE_ONLY}",
    "test_standard_scaler_near_constant_features[csr_array-float64-10000000000.0-10]":
        f"sparse input (csr_array): {_DENSE_ONLY}",
    "test_standard_scaler_near_constant_features[csr_array-float64-1e-10-10000]":
        f"sparse input (csr_array): {_DENSE_ONLY}",
    "test_standard_scaler_near_constant_features[csr_array-float64-1e-10-100]":
        f"sparse input (csr_array): {_DENSE_ONLY}",
    "test_standard_scaler_near_constant_features[csr_array-float64-1e-10-10]":
        f"sparse input (csr_array): {_DENSE_ONLY}",
    "test_standard_scaler_near_constant_features[csr_matrix-float32-1-10000]":
        f"sparse input (csr_matrix): {_DENSE_ONLY}",
    "test_standard_scaler_near_constant_features[csr_matrix-float32-1-100]":
        f"sparse input (csr_matrix): {_DENSE_ONLY}",
    "test_standard_scaler_near_constant_features[csr_matrix-float32-1-10]":
        f"sparse input (csr_matrix): {_DENSE_ONLY}",
    "test_standard_scaler_near_constant_features[csr_matrix-float32-10000000000.0-10000]":
        f"sparse input (csr_matrix): {_DENSE_ONLY}",
    "test_standard_scaler_near_constant_features[csr_matrix-float32-10000000000.0-100]":
        f"sparse input (csr_matrix): {_DENSE_ONLY}",
    "test_standard_scaler_near_constant_features[csr_matrix-float32-10000000000.0-10]":
        f"sparse input (csr_matrix): {_DENSE_ONLY}",
    "test_standard_scaler_near_constant_features[csr_matrix-float32-1e-10-10000]":
        f"sparse input (csr_matrix): {_DENSE_ONLY}",
    "test_standard_scaler_near_constant_features[csr_matrix-float32-1e-10-100]":
        f"sparse input (csr_matrix): {_DENSE_ONLY}",
    "test_standard_scaler_near_constant_features[csr_matrix-float32-1e-10-10]":
        f"sparse input (csr_matrix): {_DENSE_ONLY}",
    "test_standard_scaler_near_constant_features[csr_matrix-float64-1-10000]":
        f"sparse input (csr_matrix): {_DENSE_ONLY}",
    "test_standard_scaler_near_constant_features[csr_matrix-float64-1-100]":
        f"sparse input (csr_matrix): {_DENSE_ONLY}",
    "test_standard_scaler_near_constant_features[csr_matrix-float64-1-10]":
        f"sparse input (csr_matrix): {_DENSE_ONLY}",
    "test_standard_scaler_near_constant_features[csr_matrix-float64-10000000000.0-10000]":
        f"sparse input (csr_matrix): {_DENSE_ONLY}",
    "test_standard_scaler_near_constant_features[csr_matrix-float64-10000000000.0-100]":
        f"sparse input (csr_matrix): {_DENSE_ONLY}",
    "test_standard_scaler_near_constant_features[csr_matrix-float64-10000000000.0-10]":
        f"sparse input (csr_matrix): {_DENSE_ONLY}",
    "test_standard_scaler_near_constant_features[csr_matrix-float64-1e-10-10000]":
        f"sparse input (csr_matrix): {_DENSE_ONLY}",
    "test_standard_scaler_near_constant_features[csr_matrix-float64-1e-10-100]":
        f"sparse input (csr_matrix): {_DENSE_ONLY}",
    "test_standard_scaler_near_constant_features[csr_matrix-float64-1e-10-10]":
        f"sparse input (csr_matrix): {_DENSE_ONLY}",
    "test_standard_scaler_partial_fit_numerical_stability[csc_array]":
        f"sparse input (csc_array): {_DENSE_ONLY}",
    "test_standard_scaler_partial_fit_numerical_stability[csc_matrix]":
        f"sparse input (csc_matrix): {_DENSE_ONLY}",
    "test_standard_scaler_partial_fit_numerical_stability[csr_array]":
        f"sparse input (csr_array): {_DENSE_ONLY}",
    "test_standard_scaler_partial_fit_numerical_stability[csr_matrix]":
        f"sparse input (csr_matrix): {_DENSE_ONLY}",
    "test_standard_scaler_sample_weight[sparse_csc-Xw0-X0-sample_weight0]":
        f"sparse input (csc): {_DENSE_ONLY}",
    "test_standard_scaler_sample_weight[sparse_csc-Xw1-X1-sample_weight1]":
        f"sparse input (csc): {_DENSE_ONLY}",
    "test_standard_scaler_sample_weight[sparse_csc-Xw2-X2-sample_weight2]":
        f"sparse input (csc): {_DENSE_ONLY}",
    "test_standard_scaler_sample_weight[sparse_csr-Xw0-X0-sample_weight0]":
        f"sparse input (csr): {_DENSE_ONLY}",
    "test_standard_scaler_sample_weight[sparse_csr-Xw1-X1-sample_weight1]":
        f"sparse input (csr): {_DENSE_ONLY}",
    "test_standard_scaler_sample_weight[sparse_csr-Xw2-X2-sample_weight2]":
        f"sparse input (csr): {_DENSE_ONLY}",
    "test_standard_scaler_sparse_partial_fit_finite_variance[X_20]":
        f"sparse input (X_2 is a sparse array): {_DENSE_ONLY}",
    "test_standard_scaler_sparse_partial_fit_finite_variance[X_21]":
        f"sparse input (X_2 is a sparse array): {_DENSE_ONLY}",
    "test_standard_scaler_sparse_partial_fit_finite_variance[X_22]":
        f"sparse input (X_2 is a sparse array): {_DENSE_ONLY}",
}
